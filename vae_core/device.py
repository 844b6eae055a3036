"""The device a model runs on: CUDA, then Apple MPS, then the CPU, unless the user names one; and
the training precision that suits it."""
from __future__ import annotations

import platform
from pathlib import Path

import torch

# Training precision: "auto" takes bf16 autocast where the hardware computes in bf16 natively and
# fp32 elsewhere. Measured (BENCHMARKS.md): on a CPU with AVX512-BF16 bf16 trains 1.65x faster, on
# one without it (emulated) 2.9x slower, so the choice is the hardware's, not a fixed default.
AMP_CHOICES = ("auto", "bf16", "fp32")
# /proc/cpuinfo flags of native bf16 arithmetic: x86 AVX512-BF16 and AMX, Arm's BF16 extension.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo 'flags' on x86, 'Features' on Arm); empty
    where the system does not say (then bf16 is not assumed)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def native_bf16(device: torch.device, flags: set[str] | None = None) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with one of
    BF16_CPU_FLAGS. MPS and CPUs that do not report flags (macOS, Windows): no."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        if flags is None:
            flags = cpu_flags() if platform.system() == "Linux" else set()
        return bool(flags & BF16_CPU_FLAGS)
    return False


def resolve_amp(amp: str | bool, device: torch.device) -> bool:
    """Whether training autocasts to bf16: amp is "auto" (native bf16 only), "bf16" or "fp32"
    (True / False: configs written before "auto")."""
    if isinstance(amp, bool):
        return amp
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    return native_bf16(device) if amp == "auto" else amp == "bf16"
