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


def test_serve_answers_health_and_ready_over_http() -> None:
    port = free_port()
    entry_point = Path(sys.executable).parent / "opusagent"
    server = subprocess.Popen(
        [str(entry_point), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        answers: dict[str, httpx.Response] = {}
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            while len(answers) < 2 and time.monotonic() < deadline:
                assert server.poll() is None, "the server exited early"
                try:
                    answers = {path: http.get(path) for path in ("/health", "/ready")}
                except httpx.TransportError:
                    time.sleep(0.1)
        assert answers, "the server did not answer within 20 s"
        assert answers["/health"].json() == {"status": "ok"}
        assert answers["/ready"].status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
