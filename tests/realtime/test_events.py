"""Realtime events and formats: GA names, beta names, malformed frames."""

from __future__ import annotations

import json

import pytest

from opusagent.audio.formats import ALAW_8K, MULAW_8K, PCM16_16K, PCM16_24K, AudioFormat
from opusagent.realtime.events import (
    AudioDelta,
    AudioTranscriptDelta,
    OtherServerEvent,
    RealtimeProtocolError,
    ResponseDone,
    SessionUpdate,
    SpeechStarted,
    parse_client_event,
    parse_server_event,
)
from opusagent.realtime.formats import format_spec, model_format_for, parse_format

DELTA = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}


@pytest.mark.parametrize("name", ["response.output_audio.delta", "response.audio.delta"])
def test_audio_deltas_parse_under_the_ga_and_the_beta_name(name: str) -> None:
    frame = {"type": name, "event_id": "e1", **DELTA, "delta": "AA=="}
    event = parse_server_event(json.dumps(frame))

    assert isinstance(event, AudioDelta)
    assert event.type == "response.output_audio.delta"
    assert (event.item_id, event.delta) == ("item_1", "AA==")


@pytest.mark.parametrize(
    "name", ["response.output_audio_transcript.delta", "response.audio_transcript.delta"]
)
def test_transcript_deltas_parse_under_the_ga_and_the_beta_name(name: str) -> None:
    event = parse_server_event(json.dumps({"type": name, **DELTA, "delta": "We're "}))

    assert isinstance(event, AudioTranscriptDelta)
    assert event.delta == "We're "


def test_beta_names_without_a_model_here_still_get_their_ga_name() -> None:
    created = parse_server_event(json.dumps({"type": "conversation.item.created", "item": {}}))
    text = parse_server_event(json.dumps({"type": "response.text.delta", **DELTA, "delta": "x"}))

    assert isinstance(created, OtherServerEvent) and created.type == "conversation.item.added"
    assert isinstance(text, OtherServerEvent) and text.type == "response.output_text.delta"


def test_the_documented_shapes_parse_with_their_fields() -> None:
    started = parse_server_event(
        '{"type":"input_audio_buffer.speech_started","event_id":"event_1",'
        '"audio_start_ms":1020,"item_id":"item_2"}'
    )
    done = parse_server_event(
        '{"type":"response.done","event_id":"e","response":{"id":"resp_3","object":'
        '"realtime.response","status":"cancelled","status_details":{"type":"cancelled",'
        '"reason":"turn_detected"},"output":[],"usage":{}}}'
    )

    assert isinstance(started, SpeechStarted) and started.audio_start_ms == 1020
    assert isinstance(done, ResponseDone)
    assert (done.response_id, done.status) == ("resp_3", "cancelled")


def test_an_event_missing_a_field_is_an_error_naming_it() -> None:
    with pytest.raises(RealtimeProtocolError, match="audio_start_ms: Field required"):
        parse_server_event('{"type":"input_audio_buffer.speech_started"}')


@pytest.mark.parametrize("frame", ["not json", "[1, 2]", '{"no": "type"}'])
def test_a_frame_that_is_no_event_is_an_error(frame: str) -> None:
    with pytest.raises(RealtimeProtocolError):
        parse_server_event(frame)


def test_an_unknown_server_event_is_kept_as_it_came() -> None:
    event = parse_server_event('{"type":"rate_limits.updated","rate_limits":[]}')

    assert isinstance(event, OtherServerEvent)
    assert event.model_extra == {"rate_limits": []}


def test_a_ga_session_update_with_flat_beta_fields_is_refused() -> None:
    raw = {"type": "session.update", "session": {"type": "realtime", "voice": "alloy"}}

    with pytest.raises(RealtimeProtocolError, match=r"session\.voice: Unknown parameter"):
        parse_client_event(raw)


def test_a_ga_session_update_needs_the_session_type() -> None:
    with pytest.raises(RealtimeProtocolError, match=r"session\.type: Field required"):
        parse_client_event({"type": "session.update", "session": {"instructions": "hi"}})


def test_a_client_event_dumps_without_unset_fields() -> None:
    event = parse_client_event({"type": "session.update", "session": {"type": "realtime"}})

    assert isinstance(event, SessionUpdate)
    assert json.loads(event.model_dump_json(exclude_none=True)) == {
        "type": "session.update",
        "session": {"type": "realtime"},
    }


@pytest.mark.parametrize(
    ("bridge", "model"),
    [(MULAW_8K, MULAW_8K), (ALAW_8K, ALAW_8K), (PCM16_16K, PCM16_24K), (PCM16_24K, PCM16_24K)],
)
def test_the_model_takes_g711_as_it_is_and_anything_else_as_pcm16_24k(
    bridge: AudioFormat, model: AudioFormat
) -> None:
    assert model_format_for(bridge) == model


def test_formats_read_in_ga_and_beta_spelling() -> None:
    assert format_spec(MULAW_8K).model_dump(exclude_none=True) == {"type": "audio/pcmu"}
    assert format_spec(PCM16_24K).model_dump() == {"type": "audio/pcm", "rate": 24000}
    assert parse_format({"type": "audio/pcma"}) == ALAW_8K
    assert parse_format("g711_ulaw") == MULAW_8K
    assert parse_format("pcm16") == PCM16_24K
    with pytest.raises(ValueError, match="unknown audio format 'opus'"):
        parse_format("opus")
