"""libx264 options for reproducible test and bench clips on CPUs with AVX-512."""

from __future__ import annotations

from vsr_stream.cpuinfo import cpu_flags
from vsr_stream.media.codecs import x264_reproducible_options

_EPYC = "flags\t\t: fpu sse2 pni ssse3 fma sse4_1 sse4_2 avx bmi1 avx2 bmi2 abm avx512f avx512_bf16\n"


def test_avx512_cpus_cap_x264_at_the_sets_they_have_below_avx512():
    params = x264_reproducible_options(cpu_flags(_EPYC))["x264-params"]
    assert params.startswith("asm=")
    names = params[len("asm="):].split(",")
    assert {"SSE2", "SSSE3", "SSE4.2", "AVX", "FMA3", "AVX2", "BMI2", "LZCNT"} <= set(names)
    assert not any("512" in n for n in names) and "FMA4" not in names and "XOP" not in names


def test_a_set_the_cpu_lacks_is_not_named():
    names = x264_reproducible_options(frozenset({"avx512f", "sse4_1"}))["x264-params"][len("asm="):].split(",")
    assert "SSE4.1" in names and "AVX2" not in names and "AVX" not in names


def test_other_cpus_keep_x264s_own_choice():
    assert x264_reproducible_options(cpu_flags("flags\t: fpu sse2 avx2 fma\n")) == {}
    assert x264_reproducible_options(frozenset()) == {}
