import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from opusagent import __version__
from opusagent.cli import app
from opusagent.config import settings_markdown

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "version", "config"):
        assert command in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"opusagent {__version__}"


def test_config_show_lists_settings_with_current_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPUSAGENT_TURN__END_OF_TURN_SILENCE_MS", "432")
    result = runner.invoke(app, ["config", "--show"])
    assert result.exit_code == 0, result.output
    assert "OPUSAGENT_TURN__END_OF_TURN_SILENCE_MS" in result.output
    assert "432" in result.output


def test_config_show_reads_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "opusagent.yaml"
    config.write_text("vad_threads: 7\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "--show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "│ 7 " in result.output


def test_config_markdown_is_the_settings_reference() -> None:
    result = runner.invoke(app, ["config", "--markdown"])
    assert result.exit_code == 0
    assert result.output == settings_markdown()


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("port: 8080\nvad_thread: 2\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "--show", "--config", str(config)])
    assert result.exit_code == 1
    assert f"config file {config}, key vad_thread: unknown setting" in result.stderr


def test_serve_refuses_bad_settings_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPUSAGENT_VAD_THREADS", "0")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "OPUSAGENT_VAD_THREADS" in result.stderr


def test_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opusagent", "version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"opusagent {__version__}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_serve_answers_health_at_once_and_ready_once_models_load(tmp_path: Path) -> None:
    port = free_port()
    entry_point = Path(sys.executable).parent / "opusagent"
    server = subprocess.Popen(
        [str(entry_point), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "OPUSAGENT_TTS_CACHE_DIR": str(tmp_path),
            "OPUSAGENT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/calls.db",
        },
    )
    try:
        health: httpx.Response | None = None
        ready: httpx.Response | None = None
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            while time.monotonic() < deadline and (ready is None or ready.status_code != 200):
                assert server.poll() is None, "the server exited early"
                try:
                    health = health or http.get("/health")
                    ready = http.get("/ready")
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        assert health is not None and health.json() == {"status": "ok"}
        assert ready is not None and ready.status_code == 200, ready and ready.text
        assert set(ready.json()["components"]) == {"vad", "stt", "tts", "nlu", "records"}
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output


@pytest.mark.slow
def test_say_then_transcribe_over_a_phone_line(tmp_path: Path) -> None:
    wav = tmp_path / "agent.wav"
    said = runner.invoke(
        app,
        ["say", "I would like to speak to an agent", "-o", str(wav), "--tts", "flite"],
        env={"OPUSAGENT_TTS_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert said.exit_code == 0, said.output
    assert f"Wrote {wav}" in said.output.replace("\n", "")

    heard = runner.invoke(
        app,
        ["transcribe", str(wav), "--phone", "-g", "I would like to speak to an agent", "-g", "no"],
    )
    assert heard.exit_code == 0, heard.output
    assert "i would like to speak to an agent" in heard.output


def test_say_with_an_engine_that_cannot_run_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda program: None)
    result = runner.invoke(app, ["say", "hello", "-o", str(tmp_path / "x.wav"), "--tts", "flite"])
    assert result.exit_code == 1
    assert "tts=flite cannot run here: flite is missing (apt-get install flite)" in (
        result.stderr.replace("\n", "")
    )


def test_serve_refuses_a_broken_agent_file_naming_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\ninitial: a\nstates:\n  a: {say: Hi, final: maybe}\n")

    result = runner.invoke(app, ["serve"], env={"OPUSAGENT_AGENTS": f'["{broken}"]'})

    assert result.exit_code == 1
    assert "broken.yaml:4: states.a.final" in result.output.replace("\n", "")
