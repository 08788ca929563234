"""Display form of input/output locations: never show a password in a log line or error."""

from __future__ import annotations

import re

# scheme://user:password@host... ; the password ends at the last '@' before the path.
_CREDENTIALS = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:]*):(?P<pw>[^/]*)@")


def redact_url(url: str) -> str:
    """Return ``url`` with the password of ``scheme://user:pass@host/...`` replaced by ``***``.

    Anything else (plain paths, URLs without credentials or without a password) comes back
    unchanged.
    """
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", str(url), count=1)


def error_text(e: BaseException) -> str:
    """The reason in ``e`` without the file name av/OS errors append (it may be a URL with
    a password): ``strerror`` when there is one, else ``str(e)``."""
    reason = getattr(e, "strerror", None)
    return reason if isinstance(reason, str) and reason else str(e)


# Network inputs that never end by themselves: they reconnect and may drop frames at ingest.
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp"})


def scheme_of(url: str) -> str | None:
    """The lower-case scheme of ``scheme://...``, None for a plain path."""
    head, sep, _ = str(url).partition("://")
    return head.lower() if sep and head.replace("+", "").replace(".", "").replace("-", "").isalnum() else None


def is_live_url(url: str) -> bool:
    """True for live network streams (``rtsp://``, ``rtmp://``, ``srt://``, ``udp://``, ...)."""
    return scheme_of(url) in LIVE_SCHEMES
