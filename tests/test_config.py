from pathlib import Path

import pytest

from opusagent.config import (
    ConfigError,
    Settings,
    load_settings,
    settings_markdown,
    settings_table,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert (settings.port, settings.vad_threads) == (8080, 1)


def test_env_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPUSAGENT_PORT", "9001")
    monkeypatch.setenv("OPUSAGENT_TURN__END_OF_TURN_SILENCE_MS", "400")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.turn.end_of_turn_silence_ms == 400
    assert settings.turn.min_speech_ms == 96  # untouched nested defaults survive


def test_yaml_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "opusagent.yaml",
        "environment: production\nvad_threads: 2\nturn:\n  min_speech_ms: 120\n",
    )
    settings = load_settings(config)
    assert settings.environment == "production"
    assert settings.vad_threads == 2
    assert settings.turn.min_speech_ms == 120


def test_env_beats_file_and_nested_values_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "opusagent.yaml",
        "port: 7000\nvad_threads: 3\nturn:\n  min_speech_ms: 120\n  end_of_turn_silence_ms: 700\n",
    )
    monkeypatch.setenv("OPUSAGENT_PORT", "7001")
    monkeypatch.setenv("OPUSAGENT_TURN__END_OF_TURN_SILENCE_MS", "350")
    settings = load_settings(config)
    assert settings.port == 7001
    assert settings.vad_threads == 3
    assert settings.turn.min_speech_ms == 120
    assert settings.turn.end_of_turn_silence_ms == 350


def test_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPUSAGENT_PORT", "7001")
    assert load_settings(overrides={"port": 7002}).port == 7002


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    config = write(tmp_path / "bad.yaml", "turn:\n  end_of_turn_silence: 400\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert str(config) in message
    assert "turn.end_of_turn_silence" in message
    assert "unknown setting" in message


def test_invalid_yaml_names_file_and_position(tmp_path: Path) -> None:
    config = write(tmp_path / "broken.yaml", "port: 8080\nturn: [1\n")
    with pytest.raises(
        ConfigError, match=r"broken\.yaml is not valid YAML at line \d+, column \d+"
    ):
        load_settings(config)


def test_file_must_hold_a_mapping(tmp_path: Path) -> None:
    config = write(tmp_path / "list.yaml", "- port\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(config)


def test_empty_file_is_no_settings(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path / "empty.yaml", "")) == Settings()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_settings(tmp_path / "absent.yaml")


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPUSAGENT_TURN__MIN_SPEECH_MS", "soon")
    with pytest.raises(ConfigError, match="environment variable OPUSAGENT_TURN__MIN_SPEECH_MS"):
        load_settings()


def test_table_covers_every_setting_with_a_description() -> None:
    rows = {row.env_var: row for row in settings_table()}
    nested = {"turn", "bridges", "telemetry", "realtime", "limits"}
    top_level = {f"OPUSAGENT_{n.upper()}" for n in Settings.model_fields if n not in nested}
    assert top_level <= rows.keys()
    turn = rows["OPUSAGENT_TURN__END_OF_TURN_SILENCE_MS"]
    assert (turn.type_name, turn.default) == ("int", "500")
    assert all(row.description for row in rows.values())


def test_docs_settings_md_is_up_to_date() -> None:
    assert DOCS.read_text(encoding="utf-8") == settings_markdown(), (
        "docs/settings.md is out of date: regenerate it with `make docs` "
        "(or `opusagent config --markdown > docs/settings.md`)."
    )
