"""vsr_stream: streaming video super-resolution over a five-stage ZeroMQ pipeline."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Report", "upscale", "__version__"]


def __getattr__(name: str):  # lazy: `import vsr_stream` stays cheap for the CLI's --help
    if name in ("upscale", "Report"):
        from vsr_stream import api

        return getattr(api, name)
    raise AttributeError(f"module 'vsr_stream' has no attribute {name!r}")
