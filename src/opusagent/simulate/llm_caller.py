"""A caller voiced by a chat LLM: each turn the model gets the persona, the goal, the facts and
the conversation so far, and answers with the caller's next words. Words followed by `HANG UP`
hang up after them; an empty answer is silence."""

from __future__ import annotations

import re
from collections.abc import Mapping

from opusagent.agent.llm.chat import Message
from opusagent.simulate.callers import Move
from opusagent.simulate.llm import SimulationLLM
from opusagent.simulate.personas import Persona
from opusagent.simulate.scenarios import LLMCallerSpec, Scenario

MAX_TOKENS = 60
"""A caller's turn: a sentence or two."""
HISTORY_MESSAGES = 12
"""The most recent lines of the conversation the model sees."""
HANG_UP = re.compile(r"\bHANG\s*UP\b")
"""Upper case, as the prompt asks: "please don't hang up" is words, not a hang-up."""
_LABEL = re.compile(r"^\s*(caller|me|you|customer)\s*:\s*", re.IGNORECASE)
_VERBOSITY = {
    "terse": "You answer with as few words as possible.",
    "normal": "You answer in one short sentence.",
    "chatty": "You are chatty, but keep each answer to two sentences.",
}


def caller_prompt(scenario: Scenario, persona: Persona, spec: LLMCallerSpec) -> str:
    """Who the caller is, what it wants and knows, and how to answer."""
    who = f"You are {persona.name}, a person on a phone call to "
    who += f"the agent {scenario.agent}." if scenario.agent else "a company's phone agent."
    lines = [who]
    if persona.description:
        lines.append(persona.description)
    if scenario.goal:
        lines.append(f"Your goal: {scenario.goal}")
    if scenario.facts:
        lines.append(f"What you know: {_listed(scenario.facts)}.")
    if persona.tendencies.wrong_info_first and scenario.wrong_facts:
        wrong = _listed(scenario.wrong_facts)
        lines.append(f"The first time you are asked, you give these wrong details: {wrong}.")
    lines.append(_VERBOSITY[persona.verbosity])
    if spec.instructions:
        lines.append(spec.instructions)
    lines.append(
        f"Speak in {persona.language} as the caller only: your next words, nothing else. Give a "
        "detail only when the agent asks for it. When your goal is reached or the agent says "
        "goodbye, say goodbye and then HANG UP."
    )
    return "\n".join(lines)


def _listed(facts: Mapping[str, str]) -> str:
    return "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in facts.items())


class LLMCaller:
    """Answers what it heard with the model's words, and keeps the conversation for the next
    turn (the agent's words as the model's user, its own as the model's assistant)."""

    def __init__(
        self, llm: SimulationLLM, spec: LLMCallerSpec, scenario: Scenario, persona: Persona
    ) -> None:
        self._llm = llm
        self._spec = spec
        self._system = Message("system", caller_prompt(scenario, persona, spec))
        self._history: list[Message] = []
        self.model = llm.model(spec.model)

    async def respond(self, heard: str) -> list[Move]:
        """Raises `LLMError` (naming the endpoint) when the model cannot answer."""
        self._history.append(Message("user", heard.strip() or "(silence)"))
        result = await self._llm.complete(
            self._spec.model,
            [self._system, *self._history[-HISTORY_MESSAGES:]],
            max_tokens=MAX_TOKENS,
            temperature=self._spec.temperature,
        )
        words, hang_up = spoken(result.text)
        why = f"LLM caller ({self.model})"
        moves: list[Move] = []
        if words:
            self._history.append(Message("assistant", words))
            moves.append(Move("say", words, why))
        if hang_up:
            moves.append(Move("hang_up", why=f"{why}: hangs up"))
        return moves or [Move("silent", why=f"{why}: answered nothing")]


def spoken(answer: str) -> tuple[str, bool]:
    """The words a model's answer says (its first line, without a speaker label or quotes) and
    whether it hangs up."""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    first = _LABEL.sub("", lines[0]) if lines else ""
    hang_up = HANG_UP.search(first)
    if hang_up is not None:
        first = first[: hang_up.start()]
    words = first.strip().strip("\"'*[]() ").strip()
    return words, hang_up is not None
