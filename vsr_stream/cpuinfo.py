"""The CPU's feature flags as Linux reports them (``/proc/cpuinfo``; empty where there is none), and
the cores this process may run on."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags in the text of /proc/cpuinfo (x86 ``flags`` lines); empty when there are none."""
    return frozenset(word for line in cpuinfo.splitlines() if line.startswith("flags") and ":" in line
                     for word in line.split(":", 1)[1].split())


@cache
def this_cpu_flags() -> frozenset[str]:
    """:func:`cpu_flags` of this machine (read once); empty when /proc/cpuinfo cannot be read."""
    try:
        return cpu_flags(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return frozenset()


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
