"""A realtime call's bridge side for focused tests, and the agents they use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.audio.formats import MULAW_8K
from opusagent.call.events import CallMedia, CallOutput, Mark, MarkAcknowledged
from opusagent.realtime.call import RealtimeCall, RealtimeOptions
from opusagent.realtime.connection import RealtimeEndpoint

T = TypeVar("T")
HERE = Path(__file__).parent
BANK = HERE.parents[1] / "examples" / "agents" / "bank.yaml"
HOURS = HERE / "hours.yaml"
TWILIO = CallMedia(inbound=MULAW_8K, outbound=MULAW_8K, marks=True)


def new_agent(path: Path, call_id: str = "CA1") -> FsaAgent:
    return AgentCatalog.load([path]).new_agent(None, call_id=call_id)


@dataclass
class Bridge:
    """Collects a call's outputs and acknowledges each mark at once (a provider with nothing
    left to play)."""

    outputs: list[CallOutput] = field(default_factory=list)
    call: RealtimeCall | None = None

    async def send(self, output: CallOutput) -> None:
        self.outputs.append(output)
        if isinstance(output, Mark) and self.call is not None:
            self.call.handle(MarkAcknowledged(output.name))

    def of(self, kind: type[T]) -> list[T]:
        return [o for o in self.outputs if isinstance(o, kind)]


def realtime_call(url: str, agent: FsaAgent, bridge: Bridge) -> RealtimeCall:
    endpoint = RealtimeEndpoint(url, "gpt-realtime", api_key="sk-test")
    call = RealtimeCall("CA1", TWILIO, agent, bridge.send, RealtimeOptions(endpoint))
    bridge.call = call
    return call
