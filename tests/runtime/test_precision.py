"""`--dtype auto` resolution from faked hardware descriptions, the probe cache and the slow-bf16 warning."""
from __future__ import annotations

import logging

import pytest

from llara_cli.errors import UsageError
from llara_cli.runtime import precision
from llara_cli.runtime.precision import Bf16Probe, Hardware, cpu_native_bf16, read_cpu_flags, resolve_precision

AVX2_FLAGS = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_FLAGS = AVX2_FLAGS | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
ZEN4 = Hardware(cpu_capability="AVX512", mkldnn_bf16=True, cpu_flags=AVX512_FLAGS | {"avx512_bf16"}, machine="x86_64")
SAPPHIRE_RAPIDS = Hardware(cpu_capability="AVX512", mkldnn_bf16=True,
                           cpu_flags=AVX512_FLAGS | {"amx_tile", "amx_bf16", "amx_int8"}, machine="x86_64")
ZEN3_AVX2 = Hardware(cpu_capability="AVX2", mkldnn_bf16=False, cpu_flags=AVX2_FLAGS, machine="x86_64")
SKYLAKE_AVX512 = Hardware(cpu_capability="AVX512", mkldnn_bf16=True, cpu_flags=AVX512_FLAGS, machine="x86_64")
ARM_UNKNOWN = Hardware(cpu_capability="DEFAULT", mkldnn_bf16=True, cpu_flags=None, machine="aarch64")
FAST_BF16 = Bf16Probe(fp32_gflops=40.0, bf16_gflops=120.0)
SLOW_BF16 = Bf16Probe(fp32_gflops=43.0, bf16_gflops=0.8)


def test_auto_is_bf16_on_a_cuda_device_that_supports_it():
    assert resolve_precision("auto", Hardware(device_type="cuda", cuda_bf16=True)) == "bf16"
    assert resolve_precision("auto", Hardware(device_type="cuda", cuda_bf16=False)) == "fp32"


def test_auto_is_bf16_on_cpus_with_amx_or_avx512_bf16():
    assert resolve_precision("auto", SAPPHIRE_RAPIDS) == "bf16"
    assert resolve_precision("auto", ZEN4) == "bf16"


def test_auto_is_fp32_on_an_avx2_only_cpu_and_on_avx512_without_bf16():
    assert resolve_precision("auto", ZEN3_AVX2) == "fp32"
    assert resolve_precision("auto", SKYLAKE_AVX512) == "fp32"


def test_torch_kernel_level_below_avx512_wins_over_the_cpu_flags():
    """ATEN_CPU_CAPABILITY=avx2 on a Zen 4 (how the AVX2 kind is emulated) gives fp32."""
    emulated = Hardware(cpu_capability="AVX2", mkldnn_bf16=True, cpu_flags=ZEN4.cpu_flags, machine="x86_64")
    assert resolve_precision("auto", emulated) == "fp32"


def test_auto_without_mps_or_cuda_falls_back_to_the_cpu_decision():
    """No MPS, no CUDA: the CPU decides; an MPS device itself gets fp32."""
    assert resolve_precision("auto", Hardware(device_type="mps")) == "fp32"
    assert resolve_precision("auto", ZEN3_AVX2) == "fp32"


def test_inconclusive_queries_defer_to_the_measured_probe():
    assert cpu_native_bf16(ARM_UNKNOWN) is None
    assert resolve_precision("auto", ARM_UNKNOWN, FAST_BF16) == "bf16"
    assert resolve_precision("auto", ARM_UNKNOWN, SLOW_BF16) == "fp32"
    assert resolve_precision("auto", ARM_UNKNOWN, None) == "fp32"


def test_explicit_dtypes_are_kept_and_unknown_ones_refused():
    assert resolve_precision("bf16", ZEN3_AVX2) == "bf16"
    assert resolve_precision("fp16", ZEN4) == "fp16"
    with pytest.raises(UsageError, match="unknown dtype 'int8'"):
        resolve_precision("int8", ZEN4)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert read_cpu_flags(tmp_path / "absent") is None


def test_the_probe_is_measured_once_and_cached_per_machine(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "measure_bf16_probe", lambda: calls.append(1) or SLOW_BF16)
    first = precision.cached_bf16_probe(ARM_UNKNOWN, home=tmp_path)
    second = precision.cached_bf16_probe(ARM_UNKNOWN, home=tmp_path)
    assert first == second == SLOW_BF16 and len(calls) == 1
    assert len(list((tmp_path / precision.PROBE_DIR).glob("*.json"))) == 1


def test_the_real_probe_measures_both_dtypes():
    probe = precision.measure_bf16_probe(size=64, min_seconds=0.01)
    assert probe.fp32_gflops > 0 and probe.bf16_gflops > 0


def test_explicit_bf16_on_a_cpu_without_native_bf16_works_and_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(precision, "detect_hardware", lambda device_type="cpu": ZEN3_AVX2)
    monkeypatch.setattr(precision, "cached_bf16_probe", lambda hardware, home=None: SLOW_BF16)
    monkeypatch.setattr(precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        assert precision.resolve_dtype("bf16") == "bf16"
        assert precision.resolve_dtype("bf16") == "bf16"
        assert precision.resolve_dtype("auto") == "fp32"
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "53.8x slower than fp32" in warnings[0]


def test_auto_on_a_native_bf16_cpu_needs_no_probe(monkeypatch):
    monkeypatch.setattr(precision, "detect_hardware", lambda device_type="cpu": ZEN4)
    monkeypatch.setattr(precision, "cached_bf16_probe", lambda *_args, **_kwargs: pytest.fail("probe not needed"))
    assert precision.resolve_dtype("auto") == "bf16"
    assert precision.resolve_dtype("bf16") == "bf16"
