"""What the machine computes natively (placeholder until the capability module lands)."""
from __future__ import annotations

from pathlib import Path


def native_bf16(device: str = "cpu") -> bool:
    """True where bf16 matmuls run natively: a CUDA device that supports them, or a CPU with AMX / AVX512-BF16."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
