"""`python -m opusagent`: the same command line as `opusagent`."""

from opusagent.cli import app

if __name__ == "__main__":
    app(prog_name="opusagent")
