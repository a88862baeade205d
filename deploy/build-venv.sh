#!/usr/bin/env bash
# The build steps of the image (deploy/Dockerfile runs this; tests/deploy replays it in a temp
# venv). Usage: deploy/build-venv.sh deps|project|check VENV
#   deps     the locked dependencies only (a layer that changes only with uv.lock)
#   project  OpusAgent itself, not editable
#   check    load every bundled model offline (Silero VAD, pocketsphinx, Piper, MiniLM): the
#            models come inside the locked wheels, so an image that passes this has them all
set -euo pipefail
step=$1
venv=$2
uv=${UV:-uv}
extras=(--extra piper --extra postgres --extra otlp)
export UV_PROJECT_ENVIRONMENT=$venv UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy

case $step in
deps)
    $uv sync --locked --no-dev --no-install-project "${extras[@]}" --python python3
    ;;
project)
    $uv sync --locked --no-dev --no-editable "${extras[@]}" --python python3
    ;;
check)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$venv/bin/opusagent" say "Your card is on its way." -o "$work/said.wav"
    "$venv/bin/opusagent" transcribe "$work/said.wav" -g "your card is on its way" -g "goodbye" |
        grep -q "your card is on its way"
    "$venv/bin/python" -c "from opusagent.agent.nlu.embeddings import MiniLMEmbedder; MiniLMEmbedder()"
    ;;
*)
    echo "usage: $0 deps|project|check VENV" >&2
    exit 2
    ;;
esac
