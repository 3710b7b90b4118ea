"""Which dtype a model runs in.

``auto``: bf16 on CUDA devices that support it (when the model is validated in bf16), else fp16
where the model is validated in fp16, else fp32. On the CPU ``auto`` is always fp32: half-precision
convolutions there are ~100x slower. An explicit bf16/fp16 request for a model that is not
validated in it runs in fp32 and says so. Where the weights live is :mod:`.placement`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class PrecisionChoice:
    """The dtype to run in and, when it differs from what was asked, why."""

    dtype: torch.dtype
    note: str = ""

    @property
    def name(self) -> str:
        return NAMES[self.dtype]


def device_supports_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 at full speed (CUDA compute capability >= 8.0)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the keyword
        return torch.cuda.is_bf16_supported()


def choose_precision(
    requested: str,
    device: torch.device,
    supports_half: bool,
    supports_bfloat16: bool,
    bf16_ok: bool | None = None,
) -> PrecisionChoice:
    """Pick the compute dtype.

    Args:
        requested: one of ``auto``, ``fp32``, ``bf16``, ``fp16``.
        device: where the model runs.
        supports_half, supports_bfloat16: the model descriptor's validated precisions.
        bf16_ok: whether the device runs bf16 well (default: :func:`device_supports_bf16`).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision '{requested}' is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if requested == "fp32":
        return PrecisionChoice(torch.float32)
    if requested == "auto":
        if device.type == "cpu":
            return PrecisionChoice(torch.float32)
        if bf16_ok is None:
            bf16_ok = device_supports_bf16(device)
        if supports_bfloat16 and bf16_ok:
            return PrecisionChoice(torch.bfloat16)
        if supports_half:
            return PrecisionChoice(torch.float16)
        return PrecisionChoice(torch.float32)
    allowed = supports_bfloat16 if requested == "bf16" else supports_half
    if not allowed:
        return PrecisionChoice(
            torch.float32,
            f"{requested} requested, but this model is not validated in {requested} "
            "(it may crash or produce garbage): ran in fp32.",
        )
    return PrecisionChoice(DTYPES[requested])
