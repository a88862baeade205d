"""Far ends: each provider's side of a call (see `opusagent.bridges.farend`), by bridge name.

`opusagent dial <bridge> <url>` looks the bridge up in `FAR_ENDS`; a factory builds the far end
of one call from the URL it dials and an optional credential (`--token`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from opusagent.bridges.farend import FarEnd
from opusagent.bridges.farends.acs import AcsFarEnd
from opusagent.bridges.farends.audiocodes import AudioCodesFarEnd
from opusagent.bridges.farends.browser import BrowserFarEnd
from opusagent.bridges.farends.telnyx import TelnyxFarEnd
from opusagent.bridges.farends.twilio_media import TwilioMediaFarEnd
from opusagent.bridges.farends.vonage import VonageFarEnd


class FarEndFactory(Protocol):
    def __call__(self, url: str, *, token: str | None = None) -> FarEnd: ...


FAR_ENDS: Mapping[str, FarEndFactory] = {
    "twilio": TwilioMediaFarEnd.for_url,
    "audiocodes": AudioCodesFarEnd.for_url,
    "acs": AcsFarEnd.for_url,
    "telnyx": TelnyxFarEnd.for_url,
    "vonage": VonageFarEnd.for_url,
    "browser": BrowserFarEnd.for_url,
}


class UnknownBridgeError(ValueError):
    """No far end is registered under that bridge name."""


def far_end_for(bridge: str, url: str, *, token: str | None = None) -> FarEnd:
    """The far end of one call for `bridge`, dialling `url`."""
    factory = FAR_ENDS.get(bridge)
    if factory is None:
        known = ", ".join(sorted(FAR_ENDS))
        raise UnknownBridgeError(f"unknown bridge {bridge!r}; known bridges: {known}")
    return factory(url, token=token)


__all__ = [
    "FAR_ENDS",
    "AcsFarEnd",
    "AudioCodesFarEnd",
    "BrowserFarEnd",
    "FarEndFactory",
    "TelnyxFarEnd",
    "TwilioMediaFarEnd",
    "UnknownBridgeError",
    "VonageFarEnd",
    "far_end_for",
]
