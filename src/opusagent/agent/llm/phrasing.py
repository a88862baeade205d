"""The LLM as phraser: a state's reply worded by its routed model from the state's
`instruction`, streamed token by token (the TTS cuts the tokens into clauses and speaks each as
it completes). If the model fails or is slow to start, the state's `say` is spoken instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence

from opusagent.agent.fsa.audit import LLMCallRecord
from opusagent.agent.fsa.controller import Outcome, Phrase
from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.fsa.state import Line
from opusagent.agent.llm.chat import ChatRequest, LLMError, Message
from opusagent.agent.llm.prompts import conversation, describe_agent
from opusagent.agent.llm.router import ModelRouter, RoutedStream

SPOKEN_STYLE = (
    "Say the agent's next words to the caller on the phone: at most two short sentences of "
    "plain spoken words, no lists, markup or emojis. Never mention states, tools or rules."
)


class Phraser:
    """Phrases `Phrase` replies with each state's routed model."""

    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    def phrase(
        self, spec: AgentSpec, phrase: Phrase, history: Sequence[Line], latest: str = ""
    ) -> PhrasedReply:
        """The words for `phrase`, given the conversation so far and the caller's `latest`."""
        route = self._router.route(spec, phrase.state, "phrase", phrase.variables)
        if route is None:
            return PhrasedReply(phrase, None)
        lines = [describe_agent(spec), SPOKEN_STYLE, f"Now: {phrase.instruction}"]
        if phrase:
            lines.append(f'If in doubt, say: "{phrase}"')
        messages = [Message("system", "\n".join(lines)), *conversation(history, latest)]
        if messages[-1].role != "user":
            messages.append(Message("user", "(The caller is listening.)"))

        def build(model: str) -> ChatRequest:
            return ChatRequest(
                model=model,
                messages=messages,
                max_tokens=route.spec.max_tokens,
                temperature=route.spec.temperature,
                timeout_s=route.spec.timeout_s,
            )

        return PhrasedReply(phrase, self._router.stream(route, build))


class PhrasedReply:
    """Text deltas of one phrased reply; `record` tells the audit how it went."""

    def __init__(self, phrase: Phrase, stream: RoutedStream | None) -> None:
        self._phrase = phrase
        self._stream = stream
        self._cancelled = False
        self.record = stream.record if stream is not None else LLMCallRecord(role="phrase")

    async def __aiter__(self) -> AsyncGenerator[str, None]:
        record = self.record
        if self._stream is None:
            record.outcome = "fallback (no model for this state)"
            yield str(self._phrase)
            return
        spoken = finished = False
        try:
            async with contextlib.aclosing(aiter(self._stream)) as deltas:
                async for delta in deltas:
                    spoken = True
                    record.text += delta
                    yield delta
            finished = True
        except LLMError as exc:  # a routed stream raises only once every model failed
            record.error = str(exc)
            finished = True
        finally:
            self._cancelled = self._cancelled or not finished  # the listener went: a barge-in
            record.outcome = self._outcome(spoken)
        if not spoken and not self._cancelled and self._phrase:
            yield str(self._phrase)

    def _outcome(self, spoken: bool) -> str:
        if self._cancelled:
            return "cancelled"
        if spoken:
            return "cut short" if self.record.error else "phrased"
        return f"fallback ({'error' if self.record.error else 'no words'})"

    async def aclose(self) -> None:
        """Stop generating now (a barge-in), from any task."""
        self._cancelled = True
        self.record.outcome = "cancelled"  # before the next turn copies the audit
        if self._stream is not None:
            await self._stream.aclose()


async def phrased_speech(
    phraser: Phraser | None,
    spec: AgentSpec,
    outcome: Outcome,
    history: Sequence[Line],
    latest: str = "",
) -> str:
    """The whole speech of a decided turn, its `Phrase`s worded by the LLM (for text channels,
    which send a reply at once). The phrasing goes into the turn's audit, and `said` with it."""
    pieces: list[str] = []
    for item in outcome.reply:
        if isinstance(item, Phrase) and phraser is not None:
            reply = phraser.phrase(spec, item, history, latest)
            outcome.audit.llm.append(reply.record)
            pieces.append(" ".join("".join([delta async for delta in reply]).split()))
        elif isinstance(item, str):
            pieces.append(item)
    speech = " ".join(piece for piece in pieces if piece)
    outcome.audit.said = speech
    return speech
