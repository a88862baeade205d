"""The chat LLM a simulation asks (an LLM caller, the LLM judge, a dual call's agents): the
endpoint of the settings' `llm_*`, the same one the agents under test use. No `llm_base_url`,
no LLM: scenarios that need one say so instead of passing."""

from __future__ import annotations

from collections.abc import Sequence

from opusagent.agent.llm.chat import ChatRequest, ChatResult, LLMError, Message, Tool
from opusagent.agent.llm.endpoint import LLM, llm_from_settings
from opusagent.config import Settings

REQUEST_TIMEOUT_S = 60.0
"""The longest one answer may take: a simulation is not a live call, and a local model on a
shared CPU is slow (a 135M model needs about 20 s for a two-line verdict on 2 cores)."""
NO_LLM = "no LLM is configured (set OPUSAGENT_LLM_BASE_URL and OPUSAGENT_LLM_MODEL)"


class SimulationLLM:
    """One endpoint; model names are the agent files' (`default` is `llm_model`)."""

    def __init__(self, llm: LLM, base_url: str) -> None:
        self.llm = llm
        """The endpoint's roles for agents (proposer, phraser), for a dual call's agents."""
        self.base_url = base_url

    def model(self, name: str) -> str:
        """The endpoint's model for a model name of a scenario or agent file."""
        return self.llm.router.endpoint_model(name)

    async def complete(
        self,
        name: str,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        tool: Tool | None = None,
    ) -> ChatResult:
        """One whole answer (with `tool`: a call of it, forced); `LLMError` names the endpoint."""
        request = ChatRequest(
            model=self.model(name),
            messages=messages,
            tools=(tool,) if tool is not None else (),
            tool_choice=tool.name if tool is not None else None,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=REQUEST_TIMEOUT_S,
        )
        try:
            return await self.llm.router.client.complete(request)
        except LLMError as exc:
            raise LLMError(f"{self.base_url}: {exc}") from None

    async def aclose(self) -> None:
        await self.llm.aclose()


def simulation_llm(settings: Settings) -> SimulationLLM | None:
    """The settings' LLM, or None when none is configured (`ConfigError` when half is)."""
    llm = llm_from_settings(settings)
    if llm is None or settings.llm_base_url is None:
        return None
    return SimulationLLM(llm, settings.llm_base_url)
