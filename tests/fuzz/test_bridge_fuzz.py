"""Every bridge's translator fed malformed, truncated, oversized, reordered and type-confused
messages: it never raises anything but the documented `InvalidMessageError` (logged and ignored)
or `StreamRefusedError` (the provider's refusal), and one connection's garbage never changes what
another connection makes of a valid call.

Seeds are the valid messages of each provider's far end (`bridges/farends`), so mutations stay
close to what the bridge really parses. `OPUSAGENT_FUZZ_MESSAGES` raises the number of messages
per bridge (`make fuzz`); the default keeps `make test` quick.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opusagent.audio.formats import AudioFormat
from opusagent.bridges.acs import AcsTranslator
from opusagent.bridges.audiocodes import AudioCodesTranslator
from opusagent.bridges.browser import BrowserTranslator
from opusagent.bridges.farend import FarEnd, Send
from opusagent.bridges.farends import far_end_for
from opusagent.bridges.session import (
    Await,
    Frame,
    Inbound,
    InvalidMessageError,
    Reply,
    StartCall,
    StreamRefusedError,
    Translator,
)
from opusagent.bridges.telnyx import TelnyxTranslator
from opusagent.bridges.twilio_media import TwilioTranslator
from opusagent.bridges.vonage import VonageTranslator
from opusagent.call.events import CallerAudio

MESSAGES_PER_BRIDGE = int(os.environ.get("OPUSAGENT_FUZZ_MESSAGES", "10000"))
MAX_SEQUENCE = 12
OVERSIZED_CHARS = 70_000

TRANSLATORS: dict[str, Callable[[], Translator]] = {
    "twilio": TwilioTranslator,
    "audiocodes": AudioCodesTranslator,
    "acs": AcsTranslator,
    "telnyx": TelnyxTranslator,
    "vonage": VonageTranslator,
    "browser": BrowserTranslator,
}
fed: Counter[str] = Counter()


def far_end(bridge: str) -> FarEnd:
    token = None if bridge == "browser" else "fuzz-token"  # the browser channel has no auth
    return far_end_for(bridge, "ws://127.0.0.1:9/fuzz", token=token)


def silence(far: FarEnd) -> bytes:
    fmt: AudioFormat = far.audio_format
    return bytes(fmt.bytes_for(far.frame_ms / 1000))


def valid_call(bridge: str) -> list[Frame]:
    """A whole call as the provider sends it: opening (and its handshake answers), audio, a key
    press, audio, hang-up."""
    far = far_end(bridge)
    translator = TRANSLATORS[bridge]()
    sent: list[Frame] = []

    def send(frame: Frame) -> None:
        sent.append(frame)
        for meaning in feed(translator, frame):
            if isinstance(meaning, Reply):
                for reaction in far.receive(meaning.frame):
                    if isinstance(reaction, Send):
                        send(reaction.frame)

    audio = far.audio(silence(far))
    for frame in [*far.opening(), audio, audio, *far.dtmf("5"), audio, *far.hangup()]:
        send(frame)
    return sent


def seeds(bridge: str) -> list[Frame]:
    far = far_end(bridge)
    marker = far.marker_played("m1")
    return [*valid_call(bridge), *([marker] if marker is not None else [])]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path inside a JSON value (the value itself included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    head, rest = path[0], path[1:]
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = replaced(copy[head], rest, new, delete=delete)
    return copy


@st.composite
def mutated_json(draw: st.DrawFn, seed: str) -> str:
    """A seed with one field deleted, or given a value of another type, or made huge."""
    document = json.loads(seed)
    path = draw(st.sampled_from(list(paths(document))))
    how = draw(st.sampled_from(["delete", "retype", "oversize", "wrap"]))
    if how == "delete" and path:
        return json.dumps(replaced(document, path, None, delete=True))
    if how == "oversize":
        return json.dumps(replaced(document, path, "9" * OVERSIZED_CHARS, delete=False))
    if how == "wrap":
        return json.dumps([document])
    return json.dumps(replaced(document, path, draw(json_values), delete=False))


def frames(bridge: str) -> st.SearchStrategy[Frame]:
    valid = seeds(bridge)
    texts = [f for f in valid if isinstance(f, str)]
    binaries = [f for f in valid if isinstance(f, bytes)]
    options: list[st.SearchStrategy[Frame]] = [
        st.sampled_from(valid),
        st.text(max_size=200),
        st.binary(max_size=2000),
        json_values.map(json.dumps),
    ]
    if texts:
        options.append(st.sampled_from(texts).flatmap(mutated_json))
        options.append(
            st.sampled_from(texts).flatmap(
                lambda t: st.integers(0, len(t) - 1).map(lambda n: t[:n])
            )
        )
        options.append(st.sampled_from(texts).map(lambda t: t.encode()))  # text sent as binary
    if binaries:
        options.append(
            st.sampled_from(binaries).flatmap(
                lambda b: st.integers(0, len(b) - 1).map(lambda n: b[:n])
            )
        )
        options.append(st.sampled_from(binaries).map(lambda b: b.decode("latin-1")))
    return st.one_of(options)


def sequences(bridge: str) -> st.SearchStrategy[list[Frame]]:
    """Garbage alone, garbage after a valid opening, or a valid call shuffled."""
    opening = far_end(bridge).opening()
    garbage = st.lists(frames(bridge), min_size=1, max_size=MAX_SEQUENCE)
    return st.one_of(
        garbage,
        garbage.map(lambda tail: [*opening, *tail]),
        st.permutations(valid_call(bridge)),
    )


def feed(translator: Translator, frame: Frame) -> list[Inbound]:
    """What the translator makes of `frame`, Awaits run; only the documented errors escape."""
    result = translator.inbound(frame)
    found = result if isinstance(result, list) else [] if result is None else [result]
    meanings: list[Inbound] = []
    for item in found:
        if isinstance(item, Await):
            answer = asyncio.run(item.run())
            more = answer if isinstance(answer, list) else [] if answer is None else [answer]
            meanings.extend(more)
        else:
            meanings.append(item)
    return meanings


class Connection:
    """One socket's translator, fed as `run_session` feeds it: a refusal ends the connection."""

    def __init__(self, translator: Translator) -> None:
        self.translator = translator
        self.refused = False
        self.seen: list[str] = []

    def receive(self, frames: list[Frame]) -> None:
        for frame in frames:
            if self.refused:
                return
            try:
                self.seen.extend(describe(m) for m in feed(self.translator, frame))
            except InvalidMessageError:
                self.seen.append("ignored")
            except StreamRefusedError:
                self.seen.append("refused")
                self.refused = True


def describe(meaning: Inbound) -> str:
    """A comparable summary of one meaning (audio by its bytes; call ids left out, as some
    bridges make a fresh one per connection)."""
    if isinstance(meaning, StartCall):
        return f"start {meaning.media} {sorted(meaning.params.items())}"
    if isinstance(meaning, CallerAudio):
        return f"audio {meaning.chunk.format} {meaning.chunk.data.hex()}"
    return FRESH_ID.sub("<id>", repr(meaning))


FRESH_ID = re.compile(r"-[0-9a-f]{32}")
"""A call id a bridge makes per connection (`browser-<uuid hex>`)."""

FUZZ = settings(
    max_examples=max(1, MESSAGES_PER_BRIDGE // 3),
    deadline=None,
    derandomize=os.environ.get("OPUSAGENT_FUZZ_RANDOM") is None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@pytest.mark.slow
@pytest.mark.parametrize("bridge", sorted(TRANSLATORS))
def test_garbage_never_escapes_and_never_leaks_into_another_call(bridge: str) -> None:
    make = TRANSLATORS[bridge]
    call = valid_call(bridge)
    alone = Connection(make())
    alone.receive(call)
    assert "refused" not in alone.seen and "ignored" not in alone.seen

    @FUZZ
    @given(sequences(bridge))
    def fuzz(frames_in: list[Frame]) -> None:
        attacked, bystander = Connection(make()), Connection(make())
        for index, frame in enumerate(frames_in):
            attacked.receive([frame])
            bystander.receive(call[index : index + 1])
        bystander.receive(call[len(frames_in) :])
        fed[bridge] += len(frames_in)
        assert bystander.seen == alone.seen

    fuzz()
    assert fed[bridge] >= MESSAGES_PER_BRIDGE
