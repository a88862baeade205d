"""Settings: defaults, overridden by an optional YAML file, overridden by `OPUSAGENT_*` variables.

Nested options use `__` between levels, e.g. `OPUSAGENT_TURN__END_OF_TURN_SILENCE_MS=400`, or the
same nesting as mappings in the YAML file (`turn: {end_of_turn_silence_ms: 400}`).
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from opusagent.call.turn_policy import TurnPolicy

ENV_PREFIX = "OPUSAGENT_"
ENV_NESTED_DELIMITER = "__"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
Environment = Literal["development", "production"]
SttEngine = Literal["pocketsphinx", "whisper"]
TtsEngine = Literal["piper", "flite", "espeak"]
LlmProvider = Literal["openai", "azure", "anthropic"]
LogFormat = Literal["auto", "json", "console"]
Backend = Literal["pipeline", "realtime"]
EndpointName = Literal["twilio", "audiocodes", "acs", "telnyx", "vonage", "browser", "chat", "api"]
"""The groups of routes a credential protects (see `opusagent.security`)."""


class BridgeSettings(BaseModel):
    """How providers reach this server, and the secrets that prove it is them."""

    model_config = {"extra": "forbid", "frozen": True}

    public_url: str | None = Field(
        None,
        description="Scheme and host providers reach this server at (e.g. "
        "https://voice.example.com); unset, each request's Host header stands in.",
    )
    api_key: str | None = Field(
        None,
        description="Key required (header X-API-Key) by the REST API (/calls) and the dashboard; "
        "unset leaves them open, for local development only.",
    )
    twilio_account_sid: str | None = Field(None, description="Twilio account SID (AC…).")
    twilio_auth_token: str | None = Field(
        None,
        description="Twilio auth token: signs webhooks and streams (checked when set) and "
        "authenticates REST calls (hang-up, transfer, outbound calls).",
    )
    twilio_from_number: str | None = Field(
        None, description="Caller ID for outbound Twilio calls when a request names none."
    )
    audiocodes_token: str | None = Field(
        None,
        description="Shared token VoiceAI Connect sends as 'Authorization: Bearer …'; when set, "
        "connections without it are refused.",
    )
    acs_token: str | None = Field(
        None,
        description="Bearer token required on Azure Communication Services media sockets "
        "(e.g. added by a gateway); unset accepts any.",
    )
    telnyx_token: str | None = Field(
        None,
        description="Telnyx stream_auth_token, expected in the x-telnyx-streaming-auth-token "
        "header (or as 'Authorization: Bearer …'); unset accepts any.",
    )
    vonage_token: str | None = Field(
        None,
        description="Bearer token expected in the 'Authorization' header a Vonage NCCO sets on "
        "the websocket endpoint; unset accepts any.",
    )
    allow_unauthenticated: list[EndpointName] = Field(
        default_factory=list,
        description="Endpoints served without their credential even in production, e.g. "
        '["browser", "chat"] (twilio, audiocodes, acs, telnyx, vonage, browser, chat, api: the '
        "REST API and dashboard data). In production the others refuse every request until "
        "their credential is set; in development every endpoint is open, with a warning.",
    )


class LimitSettings(BaseModel):
    """What one connection, one client or the whole instance may ask of the server."""

    model_config = {"extra": "forbid", "frozen": True}

    max_message_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest WebSocket message taken (text counted in characters); a larger "
        "one closes its connection with code 1009 (the call stays resumable).",
    )
    max_audio_rate: float = Field(
        1.5,
        gt=1.0,
        description="Caller audio a connection may send, in times real time; faster beyond "
        "audio_burst_s is a flood: the connection is cut with code 1008.",
    )
    audio_burst_s: float = Field(
        5.0,
        gt=0,
        description="Seconds of caller audio a connection may send ahead of max_audio_rate "
        "(network jitter, a reconnect catching up) before it counts as a flood.",
    )
    max_calls: int = Field(
        500,
        ge=1,
        description="Calls in progress on this instance; more are refused with the provider's "
        'busy answer (Twilio webhooks: <Reject reason="busy"/>; streams: close code 1013).',
    )
    rest_requests_per_s: float = Field(
        10.0,
        gt=0,
        description="REST and dashboard requests per second per API key (or, without a valid "
        "key, per client address); more are answered 429 with Retry-After.",
    )
    rest_burst: int = Field(
        50, ge=1, description="REST requests a client may make at once above that rate."
    )


class TelemetrySettings(BaseModel):
    """Logs, metrics and traces."""

    model_config = {"extra": "forbid", "frozen": True}

    log_format: LogFormat = Field(
        "auto",
        description="json: one JSON object per line (for log collectors); console: readable "
        "lines; auto: console in development, json in production.",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="Base URL of an OpenTelemetry collector's OTLP/HTTP receiver (e.g. "
        "http://otel-collector:4318); traces go to its /v1/traces. Unset: no export (trace ids "
        "are still logged).",
    )
    service_name: str = Field("opusagent", description="The service.name traces are sent under.")
    redact_slot_types: list[str] = Field(
        default_factory=lambda: ["phone", "email", "name", "date"],
        description="Slot types whose values are written as *** in logs (slots marked "
        "sensitive always are).",
    )

    @field_validator("redact_slot_types")
    @classmethod
    def _known_slot_types(cls, value: list[str]) -> list[str]:
        from opusagent.agent.nlu.slots import SlotKind  # lazily: it loads the NLU

        known = get_args(SlotKind)
        unknown = [kind for kind in value if kind not in known]
        if unknown:
            raise ValueError(f"unknown slot types {unknown}; known: {', '.join(known)}")
        return value


class RealtimeSettings(BaseModel):
    """A speech-to-speech model over the OpenAI Realtime protocol (backend realtime)."""

    model_config = {"extra": "forbid", "frozen": True}

    url: str = Field(
        "wss://api.openai.com/v1/realtime",
        description="Realtime WebSocket URL, without the model (which is added as ?model=).",
    )
    api_key: str | None = Field(None, description="API key, sent as 'Authorization: Bearer …'.")
    model: str = Field("gpt-realtime", description="The speech-to-speech model.")
    voice: str = Field("alloy", description="The model's voice.")
    transcription_model: str = Field(
        "gpt-4o-transcribe",
        description="Model transcribing the caller (its transcript is the controller's turn).",
    )


class Settings(BaseSettings):
    """Everything the server reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    host: str = Field("127.0.0.1", description="Address the HTTP and WebSocket server binds to.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port the server listens on.")
    log_level: LogLevel = Field("info", description="Lowest level of log messages printed.")
    environment: Environment = Field(
        "development", description="Whether this server is a development or a production one."
    )
    vad_threads: int = Field(
        1, ge=1, description="Threads onnxruntime may use for each voice activity detector run."
    )
    inference_workers: int = Field(
        2,
        ge=1,
        description="Threads in the pool where speech recognition and synthesis run, off the loop.",
    )
    stt: SttEngine = Field("pocketsphinx", description="Speech recogniser.")
    stt_decoders: int = Field(
        2,
        ge=1,
        description="pocketsphinx decoder processes (~126 MB each): utterances decoded at once "
        "across all calls; more wait their turn.",
    )
    whisper_model_dir: Path | None = Field(
        None,
        description="Folder with a CTranslate2 Whisper model for stt=whisper (never downloaded).",
    )
    tts: TtsEngine = Field("piper", description="Speech synthesiser.")
    tts_voice: str | None = Field(
        None,
        description="Voice: a Piper .onnx model path, an espeak-ng voice name or a flite voice; "
        "unset uses the engine's default (Piper: the bundled en_US-joe-medium).",
    )
    tts_speed: float = Field(1.0, gt=0.25, le=4.0, description="Speaking speed; 1.0 is normal.")
    tts_cache_dir: Path = Field(
        Path("~/.cache/opusagent/tts"),
        description="Where pre-rendered speech is kept between runs (~ is the user's home).",
    )
    turn: TurnPolicy = Field(
        default_factory=TurnPolicy,
        description="Turn-taking: when the caller's turn starts and ends, and barge-in.",
    )
    agents: list[Path] = Field(
        default_factory=lambda: [Path("examples/agents")],
        description="Agent files, or folders of agent files (*.yaml), this server offers.",
    )
    default_agent: str | None = Field(
        "bank_card",
        description="The agent a call gets when it names none; unset: the first one loaded.",
    )
    nlu_embeddings: bool = Field(
        True,
        description="Match intents with all-MiniLM-L6-v2 sentence embeddings as well as "
        "keywords (about 7 ms per utterance); loaded at start-up, see /ready.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis holding each call's session (e.g. redis://localhost:6379/0), so a "
        "dropped or crashed call resumes on any server; unset: sessions live in this process.",
    )
    session_ttl_s: int = Field(
        3600, ge=60, description="How long a call's session is kept after its last change."
    )
    database_url: str = Field(
        "sqlite+aiosqlite:///opusagent-calls.db",
        description="Where call records are stored (SQLAlchemy async URL; PostgreSQL: "
        "postgresql+asyncpg://…, with the postgres extra).",
    )
    recordings_dir: Path | None = Field(
        None, description="Where call recordings (stereo WAV) are written; unset: none."
    )
    drain_timeout_s: float = Field(
        120.0,
        ge=0,
        description="On SIGTERM the server stops taking calls (/ready fails) and lets live "
        "calls finish for up to this long; calls still going then are dropped resumable "
        "(their sessions stay in the store) as the server exits.",
    )
    telemetry: TelemetrySettings = Field(
        default_factory=TelemetrySettings,
        description="Logs, metrics and traces.",
    )
    llm_base_url: str | None = Field(
        None,
        description="Chat LLM endpoint (OpenAI-compatible, e.g. https://api.openai.com/v1 or a "
        "local vLLM/llama.cpp/Ollama /v1 URL; the resource endpoint for Azure); unset: no LLM, "
        "agents run on their rules alone.",
    )
    llm_api_key: str | None = Field(None, description="API key of the LLM endpoint.")
    llm_provider: LlmProvider = Field(
        "openai",
        description="How to talk to llm_base_url: openai (any OpenAI-compatible server), azure "
        "(Azure OpenAI) or anthropic (the anthropic extra).",
    )
    llm_model: str | None = Field(
        None,
        description="The endpoint's model (Azure: deployment) an agent file's `model: default` "
        "means; required with llm_base_url.",
    )
    llm_models: dict[str, str] = Field(
        default_factory=dict,
        description='Other model names of agent files mapped to the endpoint\'s, e.g. {"fast": '
        '"gpt-4o-mini", "smart": "gpt-4o"}; unmapped names are sent as they are.',
    )
    llm_api_version: str | None = Field(
        None, description="Azure OpenAI API version (llm_provider azure), e.g. 2024-10-21."
    )
    llm_max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of an LLM request answered 429 or 5xx, with exponential backoff "
        "(within the agent file's timeout_s).",
    )
    bridges: BridgeSettings = Field(
        default_factory=BridgeSettings,
        description="Telephony providers: public URL, API key and per-provider credentials.",
    )
    limits: LimitSettings = Field(
        default_factory=LimitSettings,
        description="Message size, audio rate, concurrent calls and REST request rate.",
    )
    backend: Backend = Field(
        "pipeline",
        description="How calls are voiced: pipeline (VAD, STT, the agent, TTS; offline) or "
        "realtime (a speech-to-speech model, see realtime; the agent's rules still decide).",
    )
    realtime: RealtimeSettings = Field(
        default_factory=RealtimeSettings,
        description="The speech-to-speech model calls use with backend realtime.",
    )


class ConfigError(Exception):
    """Settings could not be loaded; the message names the file or variable and the key."""


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build settings from defaults, then `config_file`, then the environment, then `overrides`.

    `overrides` holds values given on the command line; they win over everything else.
    """
    file_values = read_config_file(config_file) if config_file is not None else {}
    env_values = EnvSettingsSource(Settings)()
    merged = _deep_merge(_deep_merge(file_values, env_values), overrides or {})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = [
            _describe_error(err["loc"], err["msg"], config_file, env_values, overrides or {})
            for err in exc.errors()
        ]
        raise ConfigError("Invalid settings:\n" + "\n".join(problems)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping stored in a YAML settings file (an empty file is an empty mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        raise ConfigError(f"Config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of settings, not {type(data).__name__}."
        )
    return data


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `top` laid over it; nested mappings are merged key by key."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _describe_error(
    loc: tuple[int | str, ...],
    msg: str,
    config_file: Path | None,
    env_values: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> str:
    """One line naming where a bad value came from (option, variable or file) and its key."""
    keys = [str(part) for part in loc]
    if msg == "Extra inputs are not permitted":
        msg = "unknown setting"
    if found := _found_path(overrides, keys):
        return f"  command-line option {found[0]}: {msg}"
    if found := _found_path(env_values, keys):
        env_var = ENV_PREFIX + ENV_NESTED_DELIMITER.join(found).upper()
        return f"  environment variable {env_var}: {msg}"
    if config_file is not None:
        return f"  config file {config_file}, key {'.'.join(keys)}: {msg}"
    return f"  {'.'.join(keys)}: {msg}"


def _found_path(values: Mapping[str, Any], keys: list[str]) -> list[str]:
    """The part of the nested path `keys` that `values` holds a value at, or [] if none."""
    node: Any = values
    found: list[str] = []
    for key in keys:
        if not isinstance(node, Mapping):
            break
        if key not in node:
            return []
        node = node[key]
        found.append(key)
    return found


# --- the settings table ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingRow:
    """One line of the settings table: a leaf setting with its environment variable."""

    env_var: str
    path: tuple[str, ...]
    type_name: str
    default: str
    description: str


def settings_table(
    model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX, path: tuple[str, ...] = ()
) -> list[SettingRow]:
    """Every setting of `model`, nested models expanded into their own fields."""
    rows: list[SettingRow] = []
    for name, field in model.model_fields.items():
        env_var = prefix + name.upper()
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(settings_table(annotation, env_var + ENV_NESTED_DELIMITER, (*path, name)))
            continue
        default = field.get_default(call_default_factory=True)
        rows.append(
            SettingRow(
                env_var=env_var,
                path=(*path, name),
                type_name=type_name(annotation),
                default="" if default is PydanticUndefined else format_value(default),
                description=field.description or "",
            )
        )
    return rows


SECRET_SUFFIXES = ("_token", "_key", "_secret", "_password")
"""Settings with these name endings hold secrets."""
MASK = "***"


def current_value(settings: BaseModel, row: SettingRow) -> str:
    """The value `settings` holds for the setting described by `row`, formatted for a table;
    secrets (and the passwords inside URLs) are masked."""
    value = _value_at(settings, row.path)
    if value is not None and row.path[-1].endswith(SECRET_SUFFIXES):
        return MASK
    text = format_value(value)
    password = _password_of(text)
    return text.replace(password, MASK) if password else text


def secret_values(settings: BaseModel) -> list[str]:
    """Every secret `settings` holds: keys and tokens, and the passwords inside URLs."""
    secrets: list[str] = []
    for row in settings_table(type(settings)):
        value = _value_at(settings, row.path)
        if not isinstance(value, str):
            continue
        if row.path[-1].endswith(SECRET_SUFFIXES):
            secrets.append(value)
        elif password := _password_of(value):
            secrets.append(password)
    return secrets


def _value_at(settings: BaseModel, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for name in path:
        value = getattr(value, name)
    return value


def _password_of(text: str) -> str | None:
    if "://" not in text:
        return None
    try:
        return urlsplit(text).password
    except ValueError:
        return None


def type_name(annotation: Any) -> str:
    """A short readable name for a field's type, e.g. `int`, `path | none`, `"a" | "b"`."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(
            f'"{arg}"' if isinstance(arg, str) else str(arg) for arg in get_args(annotation)
        )
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(arg) for arg in get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "none"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def format_value(value: Any) -> str:
    """A setting's value written the way it is given in an environment variable (JSON for sets)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, frozenset | set):
        return json.dumps(sorted(value))
    if isinstance(value, list | tuple):
        return json.dumps([str(item) if isinstance(item, Path) else item for item in value])
    return str(value)


def settings_markdown() -> str:
    """The Markdown document of every setting, as kept in docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated by `opusagent config --markdown` (run `make docs`); do not edit. -->",
        "",
        "Each setting is read from an environment variable. The same settings can be given in a",
        "YAML file passed with `--config`, using the lower-case names and nesting mappings for",
        "the parts joined by `__` (for example `turn: {end_of_turn_silence_ms: 400}`).",
        "Environment variables override the file; the file overrides the defaults.",
        "",
        "| Environment variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for row in settings_table():
        cells = (f"`{row.env_var}`", _code(row.type_name), _code(row.default), row.description)
        lines.append("| " + " | ".join(_escape_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|")
