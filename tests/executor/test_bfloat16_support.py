"""Native bfloat16 detection from CPU flags and GPU compute capabilities."""

import tensorflow as tf

from detection.executor import bfloat16_support

_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 avx512_vnni
bogomips\t: 4800.00

processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 avx512_vnni amx_tile
"""


def test_parse_cpu_flags_reads_every_flags_line():
    flags = bfloat16_support.parse_cpu_flags(_CPUINFO)
    assert {"avx512_bf16", "amx_tile", "avx2"} <= flags
    assert "AuthenticAMD" not in flags and "4800.00" not in flags


def test_cpu_needs_avx512_bf16_or_amx_bf16():
    assert bfloat16_support.cpu_bfloat16_reason({"avx512_bf16"}) == (
        True,
        "the CPU has avx512_bf16",
    )
    assert bfloat16_support.cpu_bfloat16_reason({"amx_bf16", "avx512_bf16"})[0]
    # AVX-512 alone, or AMX int8 tiles, do not multiply bfloat16.
    native, reason = bfloat16_support.cpu_bfloat16_reason({"avx512f", "amx_int8", "amx_tile"})
    assert not native and "none of avx512_bf16, amx_bf16" in reason


def test_gpu_needs_compute_capability_8():
    assert bfloat16_support.gpu_bfloat16_reason([(8, 0), (9, 0)])[0]
    native, reason = bfloat16_support.gpu_bfloat16_reason([(8, 6), (7, 5)])
    assert not native and "(7, 5) < 8.0" in reason


def test_this_host_on_the_default_strategy_follows_its_cpuinfo():
    expected = bfloat16_support.cpu_bfloat16_reason(bfloat16_support.host_cpu_flags())
    assert bfloat16_support.native_bfloat16(tf.distribute.get_strategy()) == expected


def test_missing_cpuinfo_means_no_flags(tmp_path):
    assert bfloat16_support.host_cpu_flags(str(tmp_path / "absent")) == set()
