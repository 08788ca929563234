"""Typed errors of vsr_stream.

Every error derives from :class:`VsrError` and from the builtin it is closest to, so
callers can catch either (``except OSError`` still catches a missing input).
"""

from __future__ import annotations


class VsrError(Exception):
    """Base class of every error raised by vsr_stream."""


class ConfigError(VsrError, ValueError):
    """A configuration is invalid; the message names the field path."""


class SourceError(VsrError, OSError):
    """The input cannot be opened, read or decoded."""


class SinkError(VsrError, OSError):
    """The output cannot be created, written or finalised."""


class ProtocolError(VsrError):
    """A wire message is malformed, of an unknown version, or inconsistent with its payload."""


class UnknownModelError(VsrError, LookupError):
    """A model name is not in the registry."""


class DuplicateModelError(VsrError, ValueError):
    """A model name was registered twice."""


class ModelInputError(VsrError, ValueError):
    """A model was given an input it cannot handle (size, channels, dtype)."""


class StageFailedError(VsrError, RuntimeError):
    """A pipeline stage failed; the message says which stage and why."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


class PipelineTimeoutError(VsrError, TimeoutError):
    """A stage waited longer than its configured timeout for a message."""


class Cancelled(VsrError):
    """The pipeline was asked to stop before it finished (Ctrl-C, SIGTERM, a failed peer)."""
