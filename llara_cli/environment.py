"""What ``llara env`` reports: versions, devices, CPU capability, the dtype ``auto`` picks, threads, the cache.

:func:`collect_environment` returns a JSON-ready dict (schema: ``ENVIRONMENT_SCHEMA``, version
``ENVIRONMENT_SCHEMA_VERSION``; documented in ``docs/environment.md``); :func:`format_environment` renders it as
the lines to paste into an issue report. Benchmarks save the same dict with their results.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
from typing import Any

from llara_cli import __version__

ENVIRONMENT_SCHEMA_VERSION = 1
# Distribution names looked up for each reported package (the first installed one wins).
PACKAGE_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "peft": ("peft",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss"),
    "pyserini": ("pyserini",),
    "tokenizers": ("tokenizers",),
}
CPU_MODEL_KEYS = ("model name", "hardware", "cpu model")
JAVA_FULL_VERSION_PATTERN = re.compile(r'^JAVA_VERSION="(?P<version>[^"]+)"', re.MULTILINE)

# The top-level keys and the types of their values; nested objects are described in docs/environment.md.
ENVIRONMENT_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "llara": str,
    "python": str,
    "platform": str,
    "packages": dict,  # {name: version or None}, names of PACKAGE_DISTRIBUTIONS
    "java": (str, type(None)),
    "devices": list,  # [{"type": "cpu", "name": ...}, {"type": "cuda", "index": 0, "name": ..., "bf16": bool}]
    "cpu": dict,  # model, machine, torch_capability, avx2, avx512, amx, native_bf16, bf16_flags
    "precision": dict,  # auto ({device: dtype}), native_bf16, probe ({fp32_gflops, bf16_gflops} or None)
    "threads": dict,  # torch, budget, source, cpus_available, omp_num_threads, tokenizers_parallelism
    "llara_home": str,
    "embedded_model": dict,  # dir, converted
}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages llara runs on (None: not installed); nothing is imported."""
    versions: dict[str, str | None] = {}
    for name, distributions in PACKAGE_DISTRIBUTIONS.items():
        versions[name] = None
        for distribution in distributions:
            try:
                versions[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def java_version() -> str | None:
    """The version of the Java runtime BM25 would start (its ``release`` file), or None without one."""
    from llara_cli.errors import LlaraError
    from llara_cli.runtime.jvm import JAVA_RELEASE_FILE, locate_java_home

    try:
        text = (locate_java_home() / JAVA_RELEASE_FILE).read_text(encoding="utf-8")
    except (LlaraError, OSError):
        return None
    match = JAVA_FULL_VERSION_PATTERN.search(text)
    return match.group("version") if match else None


def cpu_model_name() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    from llara_cli.runtime.precision import CPUINFO_PATH

    try:
        for line in CPUINFO_PATH.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in CPU_MODEL_KEYS and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _flag(flags: frozenset[str] | None, names: frozenset[str] | set[str]) -> bool | None:
    return None if flags is None else bool(flags & names)


def cpu_description(hardware: Any) -> dict[str, Any]:  # hardware: core.precision.Hardware
    """CPU capability: torch's kernel level and the AVX2 / AVX-512 / AMX / bf16 flags (None: unknown)."""
    from llara_cli.runtime.precision import AMX_FLAGS, BF16_CPU_FLAGS, cpu_native_bf16

    flags = hardware.cpu_flags
    capability = hardware.cpu_capability.upper()
    avx512 = _flag(flags, {"avx512f"})
    avx2 = _flag(flags, {"avx2"})
    if flags is None and hardware.is_x86:  # torch's kernel level says at least this much
        avx512 = capability.startswith("AVX512")
        avx2 = avx512 or capability == "AVX2"
    return {
        "model": cpu_model_name(),
        "machine": hardware.machine,
        "torch_capability": hardware.cpu_capability,
        "avx2": avx2,
        "avx512": avx512,
        "amx": _flag(flags, AMX_FLAGS),
        "bf16_flags": sorted(flags & BF16_CPU_FLAGS) if flags is not None else None,
        "native_bf16": cpu_native_bf16(hardware),
    }


def device_list() -> list[dict[str, Any]]:
    """The CPU, then each visible CUDA device (with bf16 support), then MPS if present."""
    import torch

    devices: list[dict[str, Any]] = [{"type": "cpu", "name": cpu_model_name()}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            with torch.cuda.device(index):
                devices.append({"type": "cuda", "index": index, "name": torch.cuda.get_device_name(index),
                                "bf16": bool(torch.cuda.is_bf16_supported())})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"type": "mps", "name": "Apple MPS"})
    return devices


def precision_description(probe: bool = False) -> dict[str, Any]:
    """What ``--dtype auto`` resolves to on each kind of device here, and the measured probe when it was run."""
    import torch

    from llara_cli.runtime.precision import (
        AUTO,
        CPU,
        CUDA,
        cached_bf16_probe,
        cpu_native_bf16,
        detect_hardware,
        resolve_dtype,
    )

    hardware = detect_hardware(CPU)
    native = cpu_native_bf16(hardware)
    measured = cached_bf16_probe(hardware) if probe or native is None else None
    auto = {CPU: resolve_dtype(AUTO, CPU)}
    if torch.cuda.is_available():
        auto[CUDA] = resolve_dtype(AUTO, CUDA)
    return {
        "auto": auto,
        "native_bf16": native if native is not None else auto[CPU] == "bf16",
        "decided_by": "capability queries" if native is not None else "measured probe",
        "probe": None if measured is None else {"fp32_gflops": round(measured.fp32_gflops, 2),
                                                "bf16_gflops": round(measured.bf16_gflops, 2)},
    }


def thread_description() -> dict[str, Any]:
    """The thread budget and torch's actual intra-op thread count."""
    import torch

    from llara_cli.runtime.threads import OMP_ENV, TOKENIZERS_PARALLELISM_ENV, current_thread_settings

    settings = current_thread_settings()
    return {
        "torch": torch.get_num_threads(),
        "budget": settings.threads,
        "source": settings.source,
        "cpus_available": settings.cpus_available,
        "omp_num_threads": os.environ.get(OMP_ENV),
        "tokenizers_parallelism": os.environ.get(TOKENIZERS_PARALLELISM_ENV),
    }


def collect_environment(probe: bool = False) -> dict[str, Any]:
    """Everything ``llara env`` reports, as a JSON-ready dict following ``ENVIRONMENT_SCHEMA``.

    ``probe`` also measures (or reads the cached) bf16 vs fp32 matmul rate; without it the probe runs only
    where the capability queries cannot decide.
    """
    from llara_cli.model.files import llara_home
    from llara_cli.model.gguf import embedded_model_dir
    from llara_cli.runtime.precision import CPU, detect_hardware

    model_dir = embedded_model_dir()
    return {
        "schema_version": ENVIRONMENT_SCHEMA_VERSION,
        "llara": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "java": java_version(),
        "devices": device_list(),
        "cpu": cpu_description(detect_hardware(CPU)),
        "precision": precision_description(probe),
        "threads": thread_description(),
        "llara_home": str(llara_home()),
        "embedded_model": {"dir": str(model_dir), "converted": model_dir.is_dir()},
    }


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def format_environment(info: dict[str, Any]) -> list[str]:
    """The report as ``- key: value`` lines (paste them into an issue)."""
    cpu, precision, threads = info["cpu"], info["precision"], info["threads"]
    lines = [f"- llara: {info['llara']}", f"- Python: {info['python']} ({info['platform']})"]
    lines += [f"- {name}: {version or 'not installed'}" for name, version in info["packages"].items()]
    lines.append(f"- Java: {info['java'] or 'not found'}")
    for device in info["devices"]:
        extra = f", bf16 {_yes_no(device['bf16'])}" if "bf16" in device else ""
        index = f":{device['index']}" if "index" in device else ""
        lines.append(f"- device {device['type']}{index}: {device['name']}{extra}")
    lines.append(f"- CPU: {cpu['model']} ({cpu['machine']}), torch kernels {cpu['torch_capability']}; "
                 f"AVX2 {_yes_no(cpu['avx2'])}, AVX-512 {_yes_no(cpu['avx512'])}, AMX {_yes_no(cpu['amx'])}")
    lines.append(f"- native bf16 (CPU): {_yes_no(precision['native_bf16'])} ({precision['decided_by']})")
    if precision["probe"]:
        lines.append(f"- measured matmul: fp32 {precision['probe']['fp32_gflops']} GFLOP/s, "
                     f"bf16 {precision['probe']['bf16_gflops']} GFLOP/s")
    auto = ", ".join(f"{dtype} on {device}" for device, dtype in precision["auto"].items())
    lines.append(f"- --dtype auto: {auto}")
    lines.append(f"- torch threads: {threads['torch']} (budget {threads['budget']} from {threads['source']}, "
                 f"{threads['cpus_available']} CPUs available)")
    converted = "converted" if info["embedded_model"]["converted"] else "not converted yet (first use: ~30 s)"
    lines.append(f"- LLARA_HOME: {info['llara_home']}; embedded model {converted}")
    return lines


if __name__ == "__main__":  # pragma: no cover - `python -m llara_cli.environment`
    sys.stdout.write("\n".join(format_environment(collect_environment())) + "\n")
