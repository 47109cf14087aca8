"""Which number format a run computes in: bf16 only where the hardware declares native bf16.

bf16 autocast pays where the matrix units take bf16 directly: CUDA GPUs with bf16 support, and
CPUs with AVX512_BF16 or AMX. Elsewhere bf16 is emulated and slower than fp32: on a Cascade Lake
Xeon (AVX-512 without AVX512_BF16) a 2048^2 bf16 matmul runs at a quarter of fp32's speed, on an
AVX2-only EPYC at a few hundredths, although ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
answers True on the former. So ``auto`` reads the CPU's own feature flags (torch's
``_is_avx512_bf16_supported`` / ``_is_amx_tile_supported``), never a timing: a matmul probe on a
shared machine measured anywhere from 0.15x to 5.8x, and the same command then trained in bf16 one
run and fp32 the next. The same machine always resolves the same precision, and a run records what it
resolved to, so ``--resume`` can refuse a change (`rewardkit.training.resume`).

``REWARDKIT_NATIVE_BF16=1`` (or ``0``) forces the answer, so a test suite can run the bf16 and the
fp32 path on any CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from rewardkit.errors import UsageError

FORCE_ENV = "REWARDKIT_NATIVE_BF16"


@dataclass(frozen=True)
class Precision:
    """A resolved ``--precision``: what the run computes in, and why."""

    name: str  # "bf16" or "fp32"
    reason: str
    emulated: bool = False  # bf16 asked for on hardware that only emulates it

    @property
    def mixed_precision(self) -> str:
        """accelerate's ``mixed_precision`` value."""
        return "bf16" if self.name == "bf16" else "no"

    def describe(self) -> str:
        what = "bf16 autocast (fp32 weights, reward head and loss)" if self.name == "bf16" else "fp32"
        return f"precision: {what} - {self.reason}"


def native_bf16(device_type: str) -> tuple[bool, str]:
    """(does ``device_type`` compute bf16 natively, the reason in a few words)."""
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced in {"1", "true", "yes", "on"}:
        return True, f"{FORCE_ENV}={forced} says the hardware has native bf16"
    if forced in {"0", "false", "no", "off"}:
        return False, f"{FORCE_ENV}={forced} says the hardware has no native bf16"
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, "this GPU supports bf16"
        return False, "this GPU has no bf16 support"
    if device_type != "cpu":
        return False, f"bf16 support on {device_type} is not checked"
    units = [name for name, has in (("AVX512_BF16", torch.cpu._is_avx512_bf16_supported()),
                                    ("AMX", torch.cpu._is_amx_tile_supported())) if has]
    if not units:
        return False, "this CPU has no native bf16 (no AVX512_BF16 or AMX)"
    return True, f"this CPU has {' and '.join(units)}"


def default_device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(setting: str, device_type: str | None = None) -> Precision:
    """``--precision auto|bf16|fp32`` -> the precision the run uses on ``device_type``.

    ``auto`` is bf16 only where it is native; ``bf16`` is honoured anywhere it can run (emulated
    on a CPU without native bf16, flagged by ``emulated`` so the caller warns); ``fp32`` is fp32.
    """
    device_type = device_type or default_device_type()
    if setting == "fp32":
        return Precision("fp32", "asked for (--precision fp32)")
    if setting not in ("auto", "bf16"):
        raise UsageError(f"--precision must be auto, bf16 or fp32 (got {setting!r})")
    native, why = native_bf16(device_type)
    if setting == "bf16":
        if native:
            return Precision("bf16", f"asked for (--precision bf16); {why}")
        if device_type == "cuda":
            raise UsageError(f"--precision bf16: {why} (use auto or fp32)")
        return Precision("bf16", f"asked for (--precision bf16), but {why}: bf16 is emulated here and "
                                 "slower than fp32 (auto or fp32 would run faster)", emulated=True)
    return Precision("bf16" if native else "fp32", why)


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device_type: str | None = None) -> torch.dtype | None:
    """Inference weights' dtype: ``"bf16"``/``"fp16"``/``"fp32"`` (or torch names, or a torch.dtype).

    ``"auto"`` is bf16 where ``device_type`` has native bf16 (the rule of `resolve_precision`) and
    fp32 elsewhere. None keeps the weights as saved (fp32 for rewardkit's own models).
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).lower() == "auto":
        return torch.bfloat16 if native_bf16(device_type or default_device_type())[0] else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise UsageError(f"dtype must be auto or one of {', '.join(_DTYPES)}, got {dtype!r}") from None
