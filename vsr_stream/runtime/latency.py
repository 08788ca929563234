"""Per-frame latency from ingest (decode) to encode, summarised as median and 95th percentile.

The two ends report separately and in either order (the ingest note and the HR frame reach the
encode stage by different paths). Memory stays bounded on runs of any length: at most ``keep``
latencies are kept, a uniform sample of all of them (reservoir sampling, seeded).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np


class LatencyMeter:
    def __init__(self, keep: int = 20_000, seed: int = 0) -> None:
        self.keep = keep
        self.rng = random.Random(seed)
        self.ingested_at: dict[int, float] = {}
        self.encoded_at: dict[int, float] = {}
        self.sample_s: list[float] = []
        self.count = 0

    def ingested(self, index: int, at_s: float) -> None:
        if index in self.encoded_at:
            self._add(self.encoded_at.pop(index) - at_s)
        else:
            self.ingested_at[index] = at_s

    def encoded(self, index: int, at_s: float) -> None:
        if index in self.ingested_at:
            self._add(at_s - self.ingested_at.pop(index))
        else:
            self.encoded_at[index] = at_s

    def _add(self, latency_s: float) -> None:
        self.count += 1
        if len(self.sample_s) < self.keep:
            self.sample_s.append(latency_s)
        elif (j := self.rng.randrange(self.count)) < self.keep:
            self.sample_s[j] = latency_s

    def summary(self) -> dict[str, Any]:
        """``latency_frames`` measured, ``latency_median_ms`` and ``latency_p95_ms`` (None if none)."""
        if not self.sample_s:
            return {"latency_frames": 0, "latency_median_ms": None, "latency_p95_ms": None}
        median, p95 = np.percentile(np.asarray(self.sample_s) * 1000, [50, 95])
        return {"latency_frames": self.count, "latency_median_ms": round(float(median), 3),
                "latency_p95_ms": round(float(p95), 3)}
