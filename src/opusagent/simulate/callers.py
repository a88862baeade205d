"""Callers: what the simulated caller does after each thing the agent says.

A `Caller` turns what the caller heard into `Move`s. `ScriptedCaller` follows a scenario's
rules; `FsaCaller` is itself a Finite State Agent run by the same controller as the agents
under test (offline, deterministic). `styled` lays a persona's habits over either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from opusagent.agent.fsa.catalog import build_controller
from opusagent.agent.fsa.controller import TurnInput
from opusagent.agent.fsa.loader import LoadedAgent
from opusagent.agent.fsa.templates import render
from opusagent.call.events import HangUp, SendDtmf
from opusagent.call.stages import TurnKind
from opusagent.simulate.personas import Persona
from opusagent.simulate.scenarios import Rule

MoveKind = Literal["say", "keys", "silent", "hang_up"]
CHATTY_OPENER = "Oh, okay."
"""What a chatty persona says before each spoken answer."""
_NOT_WORDS = re.compile(r"[^\w\s']")
_DIGITS_ONLY = re.compile(r"^[\d\s-]+$")


@dataclass(frozen=True, slots=True)
class Move:
    """One thing the caller does, and why (for the report)."""

    kind: MoveKind
    text: str = ""
    why: str = ""


class Caller(Protocol):
    async def respond(self, heard: str) -> list[Move]:
        """What to do after the agent said `heard` (as the caller understood it)."""
        ...


def normalized(text: str) -> str:
    """Lower case, punctuation removed, whitespace folded: what `when` patterns search."""
    return " ".join(_NOT_WORDS.sub(" ", text.lower()).split())


class _RecordingFacts(dict[str, str]):
    """Facts that note which of them a template used."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.used.add(key)
        return super().__getitem__(key)


class ScriptedCaller:
    """Answers the last thing the agent asked: of the rules whose `when` matches what was
    heard, the one matching latest in it (ties: a rule not used yet, then the first). When none
    matches, does what `otherwise` says (by default the first rule not used yet: the caller
    assumes the agent asked the next thing on its list)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        facts: Mapping[str, str],
        wrong_facts: Mapping[str, str] | None = None,
        otherwise: str = "next",
        persona: Persona,
    ) -> None:
        self._rules = list(rules)
        self._facts = dict(facts)
        self._wrong = dict(wrong_facts or {}) if persona.tendencies.wrong_info_first else {}
        self._otherwise = otherwise
        self._terse = persona.verbosity == "terse"
        self._used: set[int] = set()
        self._last: Move | None = None

    async def respond(self, heard: str) -> list[Move]:
        text = normalized(heard)
        found: list[tuple[int, bool, int]] = []
        for i, rule in enumerate(self._rules):
            if rule.when is not None:
                ends = [m.end() for m in re.finditer(rule.when, text)]
                if ends:
                    found.append((-max(ends), i in self._used, i))
        if found:
            index = min(found)[2]
            return [self._play(index, f"heard /{self._rules[index].when}/ (rule {index + 1})")]
        return [self._fallback()]

    def _fallback(self) -> Move:
        unused = [i for i in range(len(self._rules)) if i not in self._used]
        if self._otherwise == "next" and unused:
            return self._play(unused[0], f"nothing matched: next rule ({unused[0] + 1})")
        if self._otherwise == "repeat" and self._last is not None:
            return replace(self._last, why="nothing matched: says it again")
        if self._otherwise == "hang_up":
            return Move("hang_up", why="nothing matched")
        why = "nothing matched" if unused or self._otherwise != "next" else "script done"
        return Move("silent", why=why)

    def _play(self, index: int, why: str) -> Move:
        self._used.add(index)
        rule = self._rules[index]
        if rule.hang_up:
            move = Move("hang_up", why=why)
        elif rule.silent:
            move = Move("silent", why=why)
        elif rule.keys is not None:
            move = Move("keys", self._render(rule.keys), why)
        else:
            source = rule.short if self._terse and rule.short is not None else rule.say
            move = Move("say", self._render(source or ""), why)
        self._last = move
        return move

    def _render(self, template: str) -> str:
        """The template with the facts; a wrong fact stands in the first time it is used."""
        facts = _RecordingFacts({**self._facts, **self._wrong})
        text = render(template, {"facts": facts})
        for name in facts.used & set(self._wrong):
            del self._wrong[name]
        return text


class FsaCaller:
    """A caller that is a Finite State Agent: what the agent under test says is its input, its
    replies are the caller's words, its DTMF actions key digits, its hang-up hangs up. The
    scenario's facts are its call context (`{{ context.card_last4 }}`)."""

    def __init__(self, loaded: LoadedAgent, facts: Mapping[str, Any]) -> None:
        self._controller = build_controller(loaded)
        self._state = self._controller.new_state(dict(facts))

    @property
    def path(self) -> list[str]:
        return list(self._state.path)

    async def respond(self, heard: str) -> list[Move]:
        turn = (
            TurnInput(TurnKind.SPEECH, heard) if self._state.started else TurnInput(TurnKind.START)
        )
        outcome = await self._controller.decide(self._state, turn, None)
        self._state = outcome.state
        why = f"caller FSA: {outcome.audit.decision} ({outcome.audit.state_after})"
        moves: list[Move] = []
        words = [item for item in outcome.reply if isinstance(item, str)]
        if words:
            moves.append(Move("say", " ".join(words), why))
        for item in outcome.reply:
            if isinstance(item, SendDtmf):
                moves.append(Move("keys", item.digits, why))
            elif isinstance(item, HangUp):
                moves.append(Move("hang_up", why=why))
        return moves or [Move("silent", why=why)]


class Styled:
    """A persona's habits laid over a caller's moves: it goes silent after so many answers,
    keys the digits it would say (a `keyed` persona), and chats around its answers."""

    def __init__(self, inner: Caller, persona: Persona) -> None:
        self.inner = inner
        self._persona = persona
        self._answers = 0

    async def respond(self, heard: str) -> list[Move]:
        silent_after = self._persona.tendencies.goes_silent_after
        if silent_after is not None and self._answers >= silent_after:
            return [Move("silent", why=f"{self._persona.name} has gone silent")]
        moves = [self._style(move) for move in await self.inner.respond(heard)]
        self._answers += sum(move.kind in ("say", "keys") for move in moves)
        return moves

    def _style(self, move: Move) -> Move:
        keyed = self._persona.tendencies.digits == "keyed"
        if move.kind == "say" and keyed and _DIGITS_ONLY.match(move.text):
            digits = re.sub(r"\D", "", move.text)
            return Move("keys", f"{digits}#", f"{move.why}; keyed, not said")
        if move.kind == "say" and self._persona.verbosity == "chatty":
            return Move("say", f"{CHATTY_OPENER} {move.text}", move.why)
        return move
