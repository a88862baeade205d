"""OpusAgent: real-time AI telephony voice agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("opusagent")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
