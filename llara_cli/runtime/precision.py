"""The compute dtype for the hardware at hand: ``auto`` is bf16 where bf16 is native (fast), fp32 otherwise.

:func:`resolve_precision` is the pure decision, taking a :class:`Hardware` description (and, where the
capability queries cannot decide, a measured :class:`Bf16Probe`). :func:`resolve_dtype` is what commands call:
it describes this machine (:func:`detect_hardware`), measures bf16 vs fp32 matmul only when needed (cached per
machine under ``$LLARA_HOME/machine``) and warns once when an explicit bf16 will be slow.

Decision order for a CPU (torch's own queries first):

1. torch's kernel level (``torch.backends.cpu.get_cpu_capability()``) on x86 is below AVX-512: no native bf16
   (AVX-512-BF16 and AMX need AVX-512; ``ATEN_CPU_CAPABILITY=avx2`` lowers it on purpose).
2. ``/proc/cpuinfo`` lists ``avx512_bf16`` or ``amx_bf16``: native bf16.
3. oneDNN says bf16 is unsupported (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``): no native bf16.
4. x86 flags known but without a bf16 flag (AVX-512 without BF16): no native bf16 (oneDNN emulates it).
5. Otherwise (flags unreadable, ARM...) a short measured probe: bf16 if its matmul is at least as fast as fp32.
"""
from __future__ import annotations

import hashlib
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llara_cli.errors import LlaraError, UsageError
from llara_cli.runtime.dtypes import CONCRETE_DTYPES, Dtype, parse_dtype  # noqa: F401 (CONCRETE_DTYPES re-exported)

logger = logging.getLogger(__name__)

AUTO, FP32, BF16, FP16 = Dtype.AUTO, Dtype.FP32, Dtype.BF16, Dtype.FP16
PRECISION_CHOICES = tuple(Dtype)

CPU, CUDA, MPS = "cpu", "cuda", "mps"
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
AMX_FLAGS = frozenset({"amx_bf16", "amx_tile", "amx_int8"})
# torch.backends.cpu.get_cpu_capability() values below AVX-512 on x86 (no AVX-512-BF16 or AMX possible there).
X86_BELOW_AVX512 = frozenset({"DEFAULT", "NO AVX", "AVX", "AVX2"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})
CPUINFO_PATH = Path("/proc/cpuinfo")
CPUINFO_FLAG_KEYS = ("flags", "features")  # x86 "flags", ARM "Features"

PROBE_MATMUL_SIZE = 256  # 33.5 MFLOP per product: ~40 ms even at the 0.8 GFLOP/s of emulated bf16
PROBE_MIN_SECONDS = 0.1  # each dtype is timed for at least this long
PROBE_MIN_SPEEDUP = 1.0  # the probe picks bf16 only if its matmul is at least as fast as fp32
PROBE_DIR = "machine"
PROBE_FILE_PREFIX = "bf16-probe-"

_warned: set[str] = set()  # process-wide: the slow-bf16 warning is printed once


@dataclass(frozen=True)
class Hardware:
    """What the dtype decision needs to know about the device a model runs on (all plain values: fakeable)."""

    device_type: str = CPU  # cpu | cuda | mps
    cuda_bf16: bool = False  # torch.cuda.is_bf16_supported() on the CUDA device
    cpu_capability: str = ""  # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, DEFAULT...
    mkldnn_bf16: bool = False  # torch.ops.mkldnn._is_mkldnn_bf16_supported()
    cpu_flags: frozenset[str] | None = None  # /proc/cpuinfo flags; None where unreadable
    machine: str = ""  # platform.machine(): x86_64, arm64...

    @property
    def is_x86(self) -> bool:
        return self.machine.lower() in X86_MACHINES


@dataclass(frozen=True)
class Bf16Probe:
    """Measured ``torch.mm`` rates of one machine (GFLOP/s, square ``PROBE_MATMUL_SIZE`` products)."""

    fp32_gflops: float
    bf16_gflops: float

    @property
    def bf16_speedup(self) -> float:
        """bf16 rate / fp32 rate (below 1: bf16 is slower)."""
        return self.bf16_gflops / self.fp32_gflops if self.fp32_gflops > 0 else 0.0


def check_precision(name: str | Dtype) -> Dtype:
    """``name`` as a :class:`Dtype`, else a UsageError listing the choices
    (:func:`~llara_cli.runtime.dtypes.parse_dtype`)."""
    return parse_dtype(name)


def cpu_native_bf16(hardware: Hardware) -> bool | None:
    """Whether the CPU has native bf16 matmul: True/False where the queries decide, None where only a probe can."""
    flags = hardware.cpu_flags
    if hardware.is_x86 and hardware.cpu_capability.upper() in X86_BELOW_AVX512:
        return False
    if flags is not None and flags & BF16_CPU_FLAGS:
        return True
    if not hardware.mkldnn_bf16:
        return False
    if flags is not None and hardware.is_x86:
        return False  # AVX-512 without BF16: oneDNN emulates bf16, slower than fp32
    return None


def resolve_precision(requested: str | Dtype, hardware: Hardware, probe: Bf16Probe | None = None) -> Dtype:
    """The concrete dtype (``fp32``, ``bf16``, ``fp16``) for ``requested`` on ``hardware``; pure.

    An explicit dtype is returned as is. ``auto``: bf16 on a CUDA device that supports it, fp32 on other CUDA
    devices and on MPS; on a CPU, bf16 where :func:`cpu_native_bf16` says so, or, where it cannot tell, where
    ``probe`` measured bf16 at least ``PROBE_MIN_SPEEDUP`` times as fast as fp32; fp32 otherwise.
    """
    requested = parse_dtype(requested)
    if requested is not AUTO:
        return requested
    if hardware.device_type == CUDA:
        return BF16 if hardware.cuda_bf16 else FP32
    if hardware.device_type != CPU:
        return FP32
    native = cpu_native_bf16(hardware)
    if native is None:
        native = probe is not None and probe.bf16_speedup >= PROBE_MIN_SPEEDUP
    return BF16 if native else FP32


# ---------------------------------------------------------------------------------------- this machine (impure)


def read_cpu_flags(path: Path = CPUINFO_PATH) -> frozenset[str] | None:
    """The CPU feature flags of ``/proc/cpuinfo`` (first processor), or None where the file is unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in CPUINFO_FLAG_KEYS:
            return frozenset(value.split())
    return None


def default_device_type() -> str:
    """``cuda`` when a CUDA device is visible, else ``cpu`` (where training runs; encoding runs on the CPU)."""
    import torch

    return CUDA if torch.cuda.is_available() else CPU


def detect_hardware(device_type: str = CPU) -> Hardware:
    """Describe this machine's ``device_type`` device with torch's own queries and ``/proc/cpuinfo``."""
    import torch

    cuda_bf16 = False
    if device_type == CUDA and torch.cuda.is_available():
        cuda_bf16 = bool(torch.cuda.is_bf16_supported())
    return Hardware(
        device_type=device_type,
        cuda_bf16=cuda_bf16,
        cpu_capability=str(torch.backends.cpu.get_cpu_capability()),
        mkldnn_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        cpu_flags=read_cpu_flags(),
        machine=platform.machine(),
    )


def measure_bf16_probe(size: int = PROBE_MATMUL_SIZE, min_seconds: float = PROBE_MIN_SECONDS) -> Bf16Probe:
    """Time square ``torch.mm`` products in fp32 and bf16 for at least ``min_seconds`` each."""
    import torch

    rates = {}
    for name, dtype in ((FP32, torch.float32), (BF16, torch.bfloat16)):
        left, right = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)  # (size, size)
        torch.mm(left, right)  # warm-up: kernel selection, thread pool start
        products, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds or products == 0:
            torch.mm(left, right)
            products += 1
        rates[name] = 2 * size ** 3 * products / elapsed / 1e9
    return Bf16Probe(fp32_gflops=rates[FP32], bf16_gflops=rates[BF16])


def _machine_key(hardware: Hardware) -> str:
    """Names the probe cache file: the CPU, its flags, torch's version and kernel level."""
    import torch

    text = "|".join([platform.processor(), hardware.machine, hardware.cpu_capability, torch.__version__,
                     " ".join(sorted(hardware.cpu_flags or ()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_bf16_probe(hardware: Hardware, home: Path | None = None) -> Bf16Probe:
    """The probe of this machine from ``<home>/machine/``, measured and saved there on first use."""
    from llara_cli.runtime.home import llara_home
    from llara_cli.storage.files import read_json, write_json

    path = (home or llara_home()) / PROBE_DIR / f"{PROBE_FILE_PREFIX}{_machine_key(hardware)}.json"
    if path.is_file():
        try:
            payload = read_json(path)
            return Bf16Probe(fp32_gflops=float(payload["fp32_gflops"]), bf16_gflops=float(payload["bf16_gflops"]))
        except (KeyError, TypeError, ValueError, UsageError):
            logger.debug("ignoring an unreadable probe cache %s", path)
    probe = measure_bf16_probe()
    try:
        write_json(path, asdict(probe))
    except (OSError, LlaraError) as error:  # a read-only home only costs a re-measurement next time
        logger.debug("cannot cache the bf16 probe in %s: %s", path, error)
    return probe


def resolve_dtype(requested: str | Dtype = AUTO, device_type: str = CPU) -> Dtype:
    """The concrete dtype a command uses on this machine's ``device_type`` device for ``requested``.

    Measures (once per machine, cached) only where the capability queries are inconclusive, or to say how much
    slower an explicit bf16 is on a CPU without native bf16: that case works, with a warning printed once.
    """
    requested = parse_dtype(requested)
    if requested is not AUTO and (requested is not BF16 or device_type != CPU):
        return requested
    if device_type != CPU:
        return resolve_precision(requested, detect_hardware(device_type))
    hardware = detect_hardware(device_type)
    native = cpu_native_bf16(hardware)
    probe = cached_bf16_probe(hardware) if native is None or (requested == BF16 and not native) else None
    resolved = resolve_precision(requested, hardware, probe)
    if requested == BF16 and probe is not None and probe.bf16_speedup < PROBE_MIN_SPEEDUP:
        warn_slow_bf16(probe)
    return resolved


def warn_slow_bf16(probe: Bf16Probe) -> None:
    """Warn once per process that bf16 runs slower than fp32 here, by the measured factor."""
    if BF16 in _warned:
        return
    _warned.add(BF16)
    slowdown = probe.fp32_gflops / probe.bf16_gflops if probe.bf16_gflops > 0 else float("inf")
    logger.warning(
        "this CPU has no native bf16: a bf16 matmul runs %.1fx slower than fp32 here (%.1f vs %.1f GFLOP/s "
        "measured); use --dtype auto or fp32 for speed", slowdown, probe.bf16_gflops, probe.fp32_gflops,
    )
