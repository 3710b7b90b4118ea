"""Which dtype a model runs in, and what fp32 means.

``auto``: bf16 on CUDA devices that support it (when the model is validated in bf16), else fp16
where the model is validated in fp16, else fp32. On the CPU ``auto`` is always fp32: half-precision
convolutions there are ~100x slower. An explicit bf16/fp16 request for a model that is not
validated in it runs in fp32 and says so. Where the weights live is :mod:`.placement`'s job.

fp32 means IEEE float32, the arithmetic the models are validated in: a run in fp32 turns TF32 off
for cuBLAS matmuls and cuDNN convolutions (PyTorch's default lets cuDNN convolutions round their
inputs to TF32's 10-bit mantissa on Ampere and later GPUs) and asks for the highest float32 matmul
precision, and puts the caller's settings back afterwards (:func:`ieee_fp32`). Half-precision runs
leave these settings as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


# PyTorch 2.9 added per-operation precision settings beside the legacy allow_tf32 flags.
_PER_OP = all(hasattr(torch.backends.cudnn, op) for op in ("conv", "rnn"))


def _per_op_settings() -> list[tuple[object, str]]:
    """The (settings object, value) of every per-operation fp32 precision we change: cuBLAS
    matmuls, cuDNN convolutions and RNNs, oneDNN (CPU) matmuls and convolutions."""
    if not _PER_OP:
        return []
    b = torch.backends
    ops = (b.cuda.matmul, b.cudnn.conv, b.cudnn.rnn, b.mkldnn.matmul, b.mkldnn.conv)
    return [(op, op.fp32_precision) for op in ops]


def _read(getter):
    """A legacy setting, or None where torch refuses to read it (after a mix of legacy and
    per-operation settings it raises RuntimeError)."""
    try:
        return getter()
    except RuntimeError:
        return None


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """float32 matmuls and convolutions in IEEE float32 inside, the caller's settings restored after.

    Sets the legacy settings (``torch.set_float32_matmul_precision("highest")``,
    ``torch.backends.cudnn.allow_tf32 = False``, which keep both APIs consistent) and, where
    PyTorch has them, the per-operation ``fp32_precision`` of cuBLAS, cuDNN and oneDNN to
    ``"ieee"``. Restores every setting it could read: a legacy one that torch refuses to read
    (after the caller mixed both APIs) keeps the IEEE value, the per-operation ones always come back.
    """
    matmul = _read(torch.get_float32_matmul_precision)
    cudnn = _read(lambda: torch.backends.cudnn.allow_tf32)
    per_op = _per_op_settings()
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    for op, _ in per_op:
        op.fp32_precision = "ieee"
    try:
        yield
    finally:
        if matmul is not None:
            torch.set_float32_matmul_precision(matmul)
        if cudnn is not None:
            torch.backends.cudnn.allow_tf32 = cudnn
        for op, value in per_op:  # after the legacy setters, which overwrite them
            op.fp32_precision = value
