"""What the machine computes natively, and the dtype the harness picks from it.

bf16 autocast pays only where the hardware has bf16 arithmetic: CUDA GPUs that report it, x86 CPUs with
AMX-BF16 or AVX512-BF16, Arm CPUs with the BF16 extension. Elsewhere PyTorch emulates it through fp32 and it
is several times slower than fp32 (issue 15: 2048^2 matmul 104 GFLOP/s fp32 vs 30 GFLOP/s bf16 on an
AVX-512 CPU without AVX512-BF16; benchmarks/bench_dtype.py measures a machine). So options that choose bf16
take `auto` (bf16 where native, fp32 elsewhere), `bf16` / `true`, or `fp32` / `false`, and the resolved
choice is recorded where vectors or checkpoints depend on it (index bindings, manifests).

`machine_facts()` is the one description of the machine for manifests and benchmarks.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from imprag_bench.harness.errors import UserError

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 "flags" line of /proc/cpuinfo
ARM_BF16_FEATURES = ("bf16",)  # aarch64 "Features" line
CPUINFO = Path("/proc/cpuinfo")
_AUTO = ("auto", None)
_BF16 = ("bf16", "bfloat16", True, "true")
_FP32 = ("fp32", "float32", False, "false")


def _cpuinfo_text(cpuinfo: str | None) -> str:
    if cpuinfo is not None:
        return cpuinfo
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:  # not Linux: no flags known, so nothing is assumed native
        return ""


def _field(cpuinfo: str, names: tuple[str, ...]) -> str | None:
    """Value of the first line whose key (before ':') is one of `names` (first processor's block)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in names:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """CPU feature flags (x86 `flags`, Arm `Features`) of the first processor; `cpuinfo` defaults to /proc/cpuinfo."""
    return set((_field(_cpuinfo_text(cpuinfo), ("flags", "features")) or "").split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor(), else 'unknown'."""
    name = _field(_cpuinfo_text(cpuinfo), ("model name", "cpu model", "hardware"))
    return name or platform.processor() or "unknown"


def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has bf16 arithmetic (x86 AMX-BF16 or AVX512-BF16; Arm BF16)."""
    text = _cpuinfo_text(cpuinfo)
    flags = cpu_flags(text)
    x86 = _field(text, ("flags",)) is not None
    return any(f in flags for f in (CPU_BF16_FLAGS if x86 else ARM_BF16_FEATURES))


def native_bf16(device: str | torch.device = "cpu", cpuinfo: str | None = None) -> bool:
    """Whether `device` computes bf16 natively: CUDA asks torch; CPU reads the flags; anything else False."""
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if kind == "cpu":
        return cpu_native_bf16(cpuinfo)
    return False


def _norm(option):
    return option.strip().lower() if isinstance(option, str) else option


def pick_dtype(option="auto", device: str | torch.device = "cpu", cpuinfo: str | None = None) -> torch.dtype:
    """torch.bfloat16 or torch.float32 for an option value: auto (or None) = bf16 where `device` computes it
    natively, else fp32; bf16 / bfloat16 / true = bf16; fp32 / float32 / false = fp32. Anything else is a
    UserError naming the accepted values."""
    opt = _norm(option)
    if isinstance(opt, bool) or opt in _AUTO or isinstance(opt, str):
        if opt in _AUTO:
            return torch.bfloat16 if native_bf16(device, cpuinfo) else torch.float32
        if opt in _BF16:
            return torch.bfloat16
        if opt in _FP32:
            return torch.float32
    raise UserError(f"bf16 option must be auto, true (bf16) or false (fp32), got {option!r}")


def use_bf16(option="auto", device: str | torch.device = "cpu", cpuinfo: str | None = None) -> bool:
    """pick_dtype(...) is bf16: the bool that autocast's `enabled=` and index bindings take."""
    return pick_dtype(option, device, cpuinfo) == torch.bfloat16


def weight_dtype(option="auto", device: str | torch.device = "cpu") -> str:
    """The LM weight dtype name a run uses: auto = bfloat16 where `device` computes bf16 natively, else
    float32 (on a CPU without native bf16 it is emulated and slower than fp32); float32 / bfloat16 / float16
    as given. Readers and ImpRAG generate in it; training keeps fp32 weights under autocast."""
    if option in _AUTO:  # the same rule as bf16=auto
        return str(pick_dtype("auto", device)).removeprefix("torch.")
    if option in ("float32", "bfloat16", "float16"):
        return option
    raise UserError(f"dtype must be auto, float32, bfloat16 or float16, got {option!r}")


def machine_facts(device: str | torch.device = "cpu") -> dict:
    """Facts for manifests and benchmarks: CPU model, logical CPUs, torch threads, native bf16 (CPU and the
    CUDA GPU if any), the bf16 flags found, the dtype `auto` picks for `device`, torch version, GPU name."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    flags = cpu_flags()
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_native_bf16(),
        "cpu_bf16_flags": sorted(f for f in flags if f in CPU_BF16_FLAGS + ARM_BF16_FEATURES),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": gpu,
        "gpu_native_bf16": native_bf16("cuda") if gpu else None,
        "auto_dtype": str(pick_dtype("auto", device)).replace("torch.", ""),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
