"""Interrupts held back to safe points, for runs that drain on Ctrl-C or SIGTERM.

Python raises KeyboardInterrupt between any two bytecodes of the main thread. A live run
catches the first one and goes on draining, so the interrupt must not land half-way through
something it reuses: between the frames of a multipart ZeroMQ message (the next read would
start mid-message) or between handing a frame to the encoder and counting it. Inside
:func:`safe_points`, SIGINT and SIGTERM are recorded instead, and the handler that was
installed before (the one that raises) runs when the loop calls ``deliver()`` at a point
where nothing is half done.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Held:
    def __init__(self, previous: dict[int, Callable[[int, Any], Any]]) -> None:
        self.previous = previous
        self.pending: list[int] = []

    def record(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def deliver(self) -> None:
        """Run the original handler of the first held signal (it usually raises KeyboardInterrupt)."""
        if self.pending:
            signum = self.pending.pop(0)
            self.previous[signum](signum, None)


def _no_op() -> None:
    return None


@contextmanager
def safe_points(enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Hold SIGINT and SIGTERM until the returned ``deliver()`` is called.

    Only signals whose current handler is a Python callable are held (SIG_DFL and SIG_IGN keep
    their meaning), and only in the main thread, the one Python delivers signals to; elsewhere,
    or with ``enabled`` false, ``deliver`` does nothing. Signals that arrive together between
    two safe points are delivered one per safe point, so a second Ctrl-C that came with the first
    still abandons the drain. The original handlers are back on exit; a signal still held when
    the block ends normally is delivered then, and one held when it ends by an exception is
    moot: that exception is already ending the run.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield _no_op
        return
    previous = {s: h for s in _SIGNALS if callable(h := signal.getsignal(s))}
    held = _Held(previous)
    for s in previous:
        signal.signal(s, held.record)
    ok = False
    try:
        yield held.deliver
        ok = True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if ok:
            while held.pending:
                held.deliver()
