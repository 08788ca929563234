"""The CPU's feature flags as Linux reports them (``/proc/cpuinfo``); empty where there is none."""

from __future__ import annotations

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
