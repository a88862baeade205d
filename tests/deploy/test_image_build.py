"""The image's build steps (deploy/build-venv.sh, as deploy/Dockerfile runs them) replayed in
a temporary venv from a copy of the build context; the installed server then starts, loads
its bundled models and serves /ready and /metrics. No Docker engine is needed."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sessions.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def build_context(into: Path) -> Path:
    """What the Dockerfile's build stage copies, copied the same way."""
    build = DOCKERFILE.read_text().split("AS runtime", 1)[0]
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", build, re.MULTILINE):
        for source in sources.split():
            target = into / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / source, target)
    return into


def uv_command() -> str:
    found = shutil.which("uv")
    return found if found else f"{sys.executable} -m uv"


@pytest.mark.slow
def test_the_image_build_steps_install_a_server_that_starts(tmp_path: Path) -> None:
    context = build_context(tmp_path / "context")
    venv = tmp_path / "venv"
    env = {**os.environ, "UV": uv_command(), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    steps = re.findall(r"deploy/build-venv\.sh (\w+) /opt/venv", DOCKERFILE.read_text())
    assert steps == ["deps", "project", "check"]
    for step in steps:
        subprocess.run(["deploy/build-venv.sh", step, str(venv)], cwd=context, env=env, check=True)

    assert installed_from(venv).is_relative_to(venv), "the project is installed, not editable"

    port = free_port()
    serve_env = {
        **env,
        "OPUSAGENT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/calls.db",
        "OPUSAGENT_TTS_CACHE_DIR": str(tmp_path / "tts"),
        "OPUSAGENT_AGENTS": f'["{ROOT / "examples" / "agents"}"]',
    }
    server = subprocess.Popen(
        [str(venv / "bin" / "opusagent"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=serve_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            deadline = time.monotonic() + 120
            ready = 0
            while time.monotonic() < deadline and ready != 200:
                assert server.poll() is None, "the installed server exited"
                with contextlib.suppress(httpx.TransportError):
                    ready = http.get("/ready").status_code
                time.sleep(0.3)
            metrics = http.get("/metrics")
    finally:
        server.terminate()
        code = server.wait(30)

    assert ready == 200
    assert "opusagent_active_calls" in metrics.text
    assert code == 0


def installed_from(venv: Path) -> Path:
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import opusagent; print(opusagent.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())
