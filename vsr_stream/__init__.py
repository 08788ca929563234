"""vsr_stream: streaming video super-resolution over a five-stage ZeroMQ pipeline."""

from __future__ import annotations

__version__ = "0.1.0"
