"""Interrupts held back to safe points (vsr_stream.runtime.interrupts)."""

from __future__ import annotations

import signal
import threading

import pytest

from vsr_stream.runtime.interrupts import safe_points


@pytest.fixture
def raising_sigterm():
    """SIGTERM raises KeyboardInterrupt, as the CLI sets it up; restored afterwards."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, before)


def test_a_signal_waits_for_the_safe_point(raising_sigterm):
    with safe_points() as deliver:
        signal.raise_signal(signal.SIGTERM)  # would raise here without the hold
        reached = True
        with pytest.raises(KeyboardInterrupt, match=f"signal {int(signal.SIGTERM)}"):
            deliver()
        deliver()  # nothing held any more
    assert reached
    assert signal.getsignal(signal.SIGTERM) is raising_sigterm


def test_signals_that_come_together_are_delivered_one_per_safe_point(raising_sigterm):
    with safe_points() as deliver:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            deliver()
        with pytest.raises(KeyboardInterrupt):  # the second (abandon the drain) is not lost
            deliver()


def test_one_still_held_at_a_normal_end_is_delivered_then(raising_sigterm):
    with pytest.raises(KeyboardInterrupt):
        with safe_points():
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is raising_sigterm


def test_one_held_when_the_block_fails_leaves_that_failure(raising_sigterm):
    with pytest.raises(ValueError, match="the run's own"):
        with safe_points():
            signal.raise_signal(signal.SIGTERM)
            raise ValueError("the run's own failure")
    assert signal.getsignal(signal.SIGTERM) is raising_sigterm


def test_disabled_or_off_the_main_thread_it_holds_nothing(raising_sigterm):
    with safe_points(enabled=False) as deliver:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        deliver()
    seen = []

    def elsewhere():
        with safe_points() as deliver:
            seen.append(signal.getsignal(signal.SIGTERM))
            deliver()

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert seen == [raising_sigterm]


def test_default_and_ignored_dispositions_keep_their_meaning():
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with safe_points():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            signal.raise_signal(signal.SIGTERM)  # still ignored
    finally:
        signal.signal(signal.SIGTERM, before)
