"""Linear layers whose float32 CPU inference goes through oneDNN.

PyTorch's ``F.linear`` on CPU calls MKL's sgemm, which does not take its fastest kernels on every
x86 CPU (on the AMD EPYC we test on it reaches about half the speed of oneDNN). oneDNN's fp32
matmul gives the same float32 accuracy (errors against float64 of the same order as MKL's) at about
twice the speed on the token-by-channel GEMMs of SR transformers, which are most of their time.

The oneDNN op has no autograd formula, so it is used only where no gradient is needed, on
float32 CPU tensors, when oneDNN is available and enabled (``torch.backends.mkldnn.flags``);
everything else (CUDA, half precision, training) goes through ``F.linear``.

Under ``torch.compile`` (and ``torch.export``) the fused op is never used: it is opaque to the
compiler (no fake-tensor kernel), so a traced forward would break into one graph per linear.
Traced graphs get plain ``F.linear`` / GELU / add, which inductor fuses by itself. This module is
the one place that switch lives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tracing import is_tracing

_onednn_ok: bool | None = None  # None: not probed yet
# What the oneDNN op raises when this torch build or CPU cannot run it at all, so F.linear takes
# over for the rest of the process: an op signature that changed ("... failed to match any
# schema"), a fused activation the build lacks ("Fusion behavior undefined."), and no oneDNN
# kernel for this CPU/dtype ("could not create a primitive descriptor ..."). Any other error (out
# of memory above all) is the caller's to see and leaves oneDNN on.
UNSUPPORTED_MESSAGES = (
    "failed to match any schema",
    "Fusion behavior undefined",
    "could not create a primitive descriptor",
)


def _unsupported(error: RuntimeError) -> bool:
    text = str(error)
    return any(message in text for message in UNSUPPORTED_MESSAGES)


def _onednn_usable() -> bool:
    global _onednn_ok
    if _onednn_ok is None:
        _onednn_ok = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    return _onednn_ok and torch.backends.mkldnn.enabled


def _wants_onednn(x: Tensor, weight: Tensor) -> bool:
    if is_tracing():
        return False  # the one switch: traced graphs get plain ops, which inductor fuses itself
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return _onednn_usable()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, gelu: bool = False) -> Tensor:
    """``F.linear`` (followed by exact GELU when ``gelu``), through oneDNN for float32 CPU inference."""
    global _onednn_ok
    if _wants_onednn(x, weight):
        try:
            if gelu:
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        except RuntimeError as e:
            if not _unsupported(e):
                raise
            _onednn_ok = False  # this build or CPU cannot run the op: stop trying
    out = F.linear(x, weight, bias)
    return F.gelu(out) if gelu else out


def linear_add(x: Tensor, weight: Tensor, bias: Tensor | None, residual: Tensor) -> Tensor:
    """``residual + F.linear(x, weight, bias)`` (a residual connection closing a block), the add fused
    into oneDNN's product for float32 CPU inference (one pass over the output instead of two)."""
    global _onednn_ok
    fusable = residual.dtype == x.dtype and residual.is_contiguous() and residual.shape[-1] == weight.shape[0]
    if fusable and residual.shape[:-1] == x.shape[:-1] and _wants_onednn(x, weight):
        try:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
        except RuntimeError as e:
            if not _unsupported(e):
                raise
            _onednn_ok = False  # this build or CPU cannot run the op: stop trying
    return residual + linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and keys) computed by :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
