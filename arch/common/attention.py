"""``scaled_dot_product_attention`` the way every family calls it.

The fused kernels need one head width for q, k and v, and on CUDA (flash, memory-efficient) a
multiple of 8; RGT (30), DRCT (30) and ATD (35) heads are not, and RGT's recursive-generalisation
attention has narrower q/k than v, so PyTorch would fall back to its unfused math path.
Zero-padding changes nothing in the result -- the extra q·k terms are 0 and the extra value
columns are cut off -- while the softmax scale stays that of the real head width. On the CPU,
whose fused kernel takes any width, only unequal widths are padded.

Inside ``torch.export`` the attention is written out (``softmax(q * scale @ k^T + mask) @ v``):
an exported graph is translated op by op (ONNX: MatMul, Softmax), and the fused CPU kernel's
output strides, which its decomposition does not keep, would break the views after it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

FUSED_HEAD_MULTIPLE = 8


def padded_head_dim(d: int, device_type: str) -> int:
    """The head dimension a fused kernel gets on ``device_type``."""
    if device_type != "cuda" or d % FUSED_HEAD_MULTIPLE == 0:
        return d
    return -(-d // FUSED_HEAD_MULTIPLE) * FUSED_HEAD_MULTIPLE


def attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, scale: float | None = None
) -> Tensor:
    """``softmax(q k^T * scale + attn_mask) v`` over the last two dims (``scale`` default ``d^-0.5``).

    Args:
        q, k: ``(..., N, d)`` and ``(..., M, d)``.
        v: ``(..., M, dv)``.
        attn_mask: additive logits broadcastable to ``(..., N, M)``, or None.
        scale: softmax temperature; defaults to ``1 / sqrt(d)`` of the *unpadded* q.
    """
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if torch.compiler.is_exporting():
        return explicit_attention(q, k, v, attn_mask, scale)
    dq, dv = q.shape[-1], v.shape[-1]
    width = padded_head_dim(max(dq, dv), q.device.type)
    if dq != width:
        q, k = F.pad(q, (0, width - dq)), F.pad(k, (0, width - dq))
    if dv != width:
        v = F.pad(v, (0, width - dv))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
    return out[..., :dv] if dv != width else out


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, scale: float) -> Tensor:
    """:func:`attention` as plain ops (what an exported graph holds); the same result up to rounding."""
    logits = (q * scale) @ k.transpose(-2, -1)
    if attn_mask is not None:
        logits = logits + attn_mask
    return logits.softmax(dim=-1) @ v
