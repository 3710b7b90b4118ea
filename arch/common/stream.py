"""Mixed precision the way the models were trained under AMP: a float32 residual stream.

With half-precision weights, the residual stream (the running sum every block adds into) is kept
in float32; each block normalises it, computes in the weights' dtype, and adds its output back in
float32. This is what autocast training does (bf16 matmuls, float32 sums), so the arithmetic a
checkpoint was trained with is the one it runs with. It keeps un-normalised features that grow
past fp16's 65504 finite, and it stops the stream being rounded to bf16's 8 bits at every add.
In float32 every cast below is a no-op, so the float32 model is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def stream_dtype(dtype: torch.dtype, enabled: bool = True) -> torch.dtype:
    """The dtype the residual stream is carried in for weights of ``dtype``."""
    return torch.promote_types(dtype, torch.float32) if enabled else dtype


def norm_to(norm: nn.LayerNorm, x: Tensor, dtype: torch.dtype) -> Tensor:
    """``norm(x)`` computed in ``x``'s dtype (the float32 stream), returned in ``dtype``."""
    weight = norm.weight.to(x.dtype)
    bias = norm.bias.to(x.dtype)
    return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps).to(dtype)


# fp16 has 5 exponent bits: finite up to 65504. Tensors read raw from the float32 stream are scaled
# by a power of two (exact) so their largest value is at most 2^FP16_HEADROOM_LOG2, leaving room
# for the sums inside a conv or matmul. bf16 shares float32's range and needs none of this.
FP16_HEADROOM_LOG2 = 10


def fp16_scale(x: Tensor, dtype: torch.dtype) -> Tensor | None:
    """Power-of-two divisor (0-dim float32 tensor, >= 1) for computing on ``x`` in fp16, or None
    when ``dtype`` is not fp16 or ``x`` is already in it. No host sync: it stays on the device."""
    if dtype != torch.float16 or x.dtype == dtype:
        return None
    # amax over every dim named (exporters translate no dim-less amax); the same value
    peak = x.detach().abs().amax(dim=tuple(range(x.dim())))
    exponent = torch.ceil(torch.log2(peak.float())) - FP16_HEADROOM_LOG2
    return torch.exp2(exponent.clamp(min=0))


def float32_forward(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` computed in float32 whatever the dtype of its weights.

    For the small parts of a half-precision model that are cheap and sensitive: the MLPs that turn
    position offsets into biases, and the token-dictionary projections. Handles ``nn.Linear``,
    ``nn.LayerNorm``, parameter-free layers (activations) and ``nn.Sequential`` of those.
    """
    x = x.float()
    if isinstance(module, nn.Sequential):
        for layer in module:
            x = float32_forward(layer, x)
        return x
    if isinstance(module, nn.Linear):
        return F.linear(x, module.weight.float(), _float(module.bias))
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(
            x, module.normalized_shape, _float(module.weight), _float(module.bias), module.eps
        )
    if next(module.parameters(), None) is None:
        return module(x)
    raise TypeError(f"float32_forward does not know how to evaluate {type(module).__name__}")


def _float(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.float()
