"""What a load test does, checked before any call is placed: loopback only, bounded in count
and time."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from opusagent.bridges.farends import FAR_ENDS
from opusagent.call.stages import Samples

MAX_CALLS = 1000
"""More concurrent calls than one machine's loopback test should place."""
MAX_DURATION_S = 3600.0
MAX_RAMP_S = 600.0
BRIDGE_PATHS = {
    "twilio": "/twilio/media",
    "audiocodes": "/audiocodes",
    "acs": "/acs",
    "browser": "/browser",
    "telnyx": "/telnyx",
    "vonage": "/vonage",
}
"""Where `opusagent serve` serves each bridge, for a URL given without a path."""
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class LoadPlanError(ValueError):
    """The load test asked for is not allowed or makes no sense; the message says why."""


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """N calls placed `ramp_s` apart in total, each lasting `duration_s` and saying `speech`
    (then each of `then`, in turn) again and again (at most `turns` times when given)."""

    bridge: str
    url: str
    calls: int
    ramp_s: float
    duration_s: float
    speech: Samples
    """The caller's utterance, mono int16, trimmed to its voiced part."""
    rate: int
    turns: int | None = None
    quiet_s: float = 1.0
    """Silence after which the agent's answer is over and the caller speaks again."""
    answer_timeout_s: float = 10.0
    """The longest wait for an answer before the caller speaks again."""
    token: str | None = None
    """The provider's credential, as `opusagent dial --token`."""
    then: tuple[Samples, ...] = ()
    """What the caller says at the turns after `speech`, in order (same rate, trimmed); after
    the last, `speech` again. A script that follows an agent's states."""

    def __post_init__(self) -> None:
        check_bounds(self.bridge, self.calls, self.ramp_s, self.duration_s, self.turns)
        if any(len(said) == 0 for said in (self.speech, *self.then)):
            raise LoadPlanError("the caller's speech is empty (no voiced audio)")

    def utterance(self, turn: int) -> Samples:
        """What the caller says at `turn` (from 0)."""
        index = turn % (1 + len(self.then))
        return self.speech if index == 0 else self.then[index - 1]

    @property
    def speech_s(self) -> float:
        return len(self.speech) / self.rate

    def start_offset(self, index: int) -> float:
        """When call `index` (from 0) is placed, in seconds from the start of the test."""
        return index * self.ramp_s / self.calls


def check_bounds(
    bridge: str, calls: int, ramp_s: float, duration_s: float, turns: int | None
) -> None:
    """`LoadPlanError` unless the bridge is known and the numbers are within the limits."""
    if bridge not in BRIDGE_PATHS or bridge not in FAR_ENDS:
        known = ", ".join(sorted(set(BRIDGE_PATHS) & set(FAR_ENDS)))
        raise LoadPlanError(f"unknown bridge {bridge!r}; known bridges: {known}")
    if not 1 <= calls <= MAX_CALLS:
        raise LoadPlanError(f"--calls must be between 1 and {MAX_CALLS}, got {calls}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise LoadPlanError(
            f"--duration must be more than 0 and at most {MAX_DURATION_S:g} s, got {duration_s:g}"
        )
    if not 0 <= ramp_s <= MAX_RAMP_S:
        raise LoadPlanError(f"--ramp must be between 0 and {MAX_RAMP_S:g} s, got {ramp_s:g}")
    if turns is not None and turns < 1:
        raise LoadPlanError(f"--turns must be at least 1, got {turns}")


def loopback_url(url: str, bridge: str) -> str:
    """`url` with the bridge's default path when it has none; `LoadPlanError` unless it is a
    ws:// or wss:// URL of this machine (a load test never dials another host)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise LoadPlanError(f"{url!r} is not a WebSocket URL (ws://127.0.0.1:PORT/...)")
    host = parts.hostname or ""
    if not _is_loopback(host):
        raise LoadPlanError(
            f"load tests dial this machine only (127.0.0.0/8, ::1, localhost); {host!r} is not "
            "a loopback address"
        )
    if parts.path in ("", "/") and bridge in BRIDGE_PATHS:
        return urlunsplit(parts._replace(path=BRIDGE_PATHS[bridge]))
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
