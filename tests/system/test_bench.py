"""`vsr-stream bench` runs both loops on one clip and reports their fps and ratio (no timing asserted)."""

from __future__ import annotations

import json

from tests.system.conftest import run_cli
from vsr_stream.config import load_config


def test_bench_reports_both_loops():
    res = run_cli("bench", "--frames", "4", "--size", "64x48", "--repeats", "1", "--scale", "2", "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["frames"] == 4
    assert result["pipeline_fps"] > 0 and result["naive_fps"] > 0
    assert abs(result["ratio"] - result["pipeline_fps"] / result["naive_fps"]) < 1e-9
    assert result["naive_model"] == load_config(None).upscale.branches[-1].model  # the default's hardest class
