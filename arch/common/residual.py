"""The conv that closes a residual group (and the body) in SwinIR-style models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .stream import fp16_scale


def residual_conv(dim: int, kind: str) -> nn.Module:
    """``1conv``: one 3x3 conv; ``3conv``: a 3x3 -> 1x1 -> 3x3 bottleneck at ``dim // 4`` channels.

    Key layout matches the official checkpoints (``conv.weight`` or ``conv.0/2/4.weight``).
    """
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', not {kind!r}")


def residual_conv_from_stream(conv: nn.Module, x: Tensor, dtype: torch.dtype) -> Tensor:
    """``conv(x)`` for a group-closing conv (:func:`residual_conv`) that reads the raw
    residual stream ``x``, computed in the weights' ``dtype``.

    In fp16 the stream of a trained SwinIR-style model can exceed the format's range. Convolution
    and LeakyReLU are positively homogeneous, so ``conv(x) = s * conv'(x / s)`` where ``conv'`` has
    its biases divided by ``s``; with ``s`` a power of two the scaling itself is exact. Returns
    float32 when scaled, else ``dtype``.
    """
    scale = fp16_scale(x, dtype)
    if scale is None:
        return conv(x.to(dtype))
    y = (x / scale).to(dtype)
    for layer in conv if isinstance(conv, nn.Sequential) else (conv,):
        if isinstance(layer, nn.Conv2d):
            bias = None if layer.bias is None else layer.bias / scale.to(dtype)
            y = F.conv2d(y, layer.weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
        elif isinstance(layer, nn.LeakyReLU):
            y = F.leaky_relu(y, layer.negative_slope)
        else:
            raise TypeError(f"cannot rescale {type(layer).__name__} inside a residual conv")
    return y.float() * scale


def residual_conv_kind(state_dict, prefix: str) -> str | None:
    """Which :func:`residual_conv` is saved under ``prefix``: ``1conv``, ``3conv``, or None (none)."""
    if f"{prefix}.weight" in state_dict:
        return "1conv"
    if f"{prefix}.0.weight" in state_dict:
        return "3conv"
    return None
