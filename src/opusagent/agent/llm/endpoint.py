"""The LLM a server (or `opusagent agent chat`) uses, built from its settings: one endpoint,
its model names, and the roles played with it. No `llm_base_url`, no LLM."""

from __future__ import annotations

from dataclasses import dataclass

from opusagent.agent.llm.chat import ChatClient
from opusagent.agent.llm.phrasing import Phraser
from opusagent.agent.llm.proposer import LLMProposer
from opusagent.agent.llm.router import ModelRouter
from opusagent.config import ConfigError, Settings


@dataclass(frozen=True)
class LLM:
    """One endpoint and the roles it plays for every agent of the process."""

    router: ModelRouter
    proposer: LLMProposer
    phraser: Phraser

    async def aclose(self) -> None:
        await self.router.client.aclose()


def llm_from_settings(settings: Settings) -> LLM | None:
    if settings.llm_base_url is None:
        return None
    if not settings.llm_model:
        raise ConfigError(
            "Invalid settings:\n  llm_model (OPUSAGENT_LLM_MODEL) is required when "
            "llm_base_url is set: it is the model an agent file's `model: default` means."
        )
    router = ModelRouter(
        chat_client(settings, settings.llm_base_url),
        default_model=settings.llm_model,
        aliases=settings.llm_models,
    )
    return LLM(router, LLMProposer(router), Phraser(router))


def chat_client(settings: Settings, base_url: str) -> ChatClient:
    """The client of `settings.llm_provider` for the endpoint at `base_url`."""
    if settings.llm_provider == "anthropic":
        try:
            import anthropic

            from opusagent.agent.llm.anthropic_client import AnthropicChat
        except ImportError:
            raise ConfigError(
                "Invalid settings:\n  llm_provider anthropic needs the anthropic SDK "
                "(install opusagent[anthropic])."
            ) from None
        return AnthropicChat(
            anthropic.AsyncAnthropic(
                base_url=base_url,
                api_key=settings.llm_api_key,
                max_retries=settings.llm_max_retries,
            )
        )
    from openai import AsyncAzureOpenAI, AsyncOpenAI

    from opusagent.agent.llm.openai_client import OpenAIChat

    if settings.llm_provider == "azure":
        if not settings.llm_api_version:
            raise ConfigError(
                "Invalid settings:\n  llm_api_version (OPUSAGENT_LLM_API_VERSION) is required "
                "with llm_provider azure."
            )
        return OpenAIChat(
            AsyncAzureOpenAI(
                azure_endpoint=base_url,
                api_key=settings.llm_api_key,
                api_version=settings.llm_api_version,
                max_retries=settings.llm_max_retries,
            )
        )
    return OpenAIChat(
        AsyncOpenAI(
            base_url=base_url,
            # Local servers take any key; the SDK insists on one.
            api_key=settings.llm_api_key or "none",
            max_retries=settings.llm_max_retries,
        )
    )
