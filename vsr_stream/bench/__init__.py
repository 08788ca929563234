"""`vsr-stream bench`: the measuring instrument (see :func:`run_bench`).

clips: the generated clip and its HR frames; measure: runs in child processes, the naive
loop, memory and matmul peaks; analyse: the numbers; plot: fps against PSNR.
"""

from vsr_stream.bench.run import BENCH_ENCODE, run_bench

__all__ = ["BENCH_ENCODE", "run_bench"]
