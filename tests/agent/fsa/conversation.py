"""Text turns into a controller, for controller and example-agent tests."""

from __future__ import annotations

import datetime
from pathlib import Path

from opusagent.agent.fsa.catalog import build_controller
from opusagent.agent.fsa.controller import Controller, Outcome, Proposer, TurnInput
from opusagent.agent.fsa.loader import LoadedAgent
from opusagent.agent.fsa.state import AgentState
from opusagent.agent.tools.registry import ToolContext
from opusagent.call.stages import TurnKind

TODAY = datetime.date(2026, 11, 21)
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "agents"


def controller_for(agent: LoadedAgent, proposer: Proposer | None = None) -> Controller:
    return build_controller(agent, proposer=proposer, today=TODAY)


class Conversation:
    """Text turns into a controller, keeping the state between them."""

    def __init__(self, controller: Controller, agent: LoadedAgent | None = None) -> None:
        self.controller = controller
        self.context = ToolContext(
            call_id="test", slots={}, context={}, knowledge=agent.knowledge if agent else None
        )
        self.state: AgentState = controller.new_state()
        self.outcomes: list[Outcome] = []

    async def turn(self, kind: TurnKind, text: str = "", dtmf: str = "") -> Outcome:
        generation = len(self.outcomes) + 1
        outcome = await self.controller.decide(
            self.state, TurnInput(kind, text, dtmf, generation=generation), self.context
        )
        self.state = outcome.state
        self.outcomes.append(outcome)
        return outcome

    async def start(self) -> Outcome:
        return await self.turn(TurnKind.START)

    async def say(self, text: str) -> Outcome:
        return await self.turn(TurnKind.SPEECH, text)

    async def key(self, digits: str) -> Outcome:
        return await self.turn(TurnKind.DTMF, dtmf=digits)

    async def silence(self) -> Outcome:
        return await self.turn(TurnKind.NO_INPUT)
