"""The nhs2828 unofficial RGT (github nhs2828/Recursive-Generalization-Transformer_), inference only.

Upstream's forward takes the RG-SA recursion target ``h`` as an argument and only accepts inputs
with ``H % 8 == 0``, ``W % 32 == 0`` and ``H >= 64`` (for ``h = 16``). Ours stores ``h`` as
``recursion_size`` and accepts any size: it reflect-pads bottom/right to the smallest size the
upstream forward accepts, runs, and crops the output.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from ..common.cache import attach_geometry_cache, cache_key, use_cache
from ..common.state import ignore_derived_buffers
from .blocks import (
    WINDOW,
    LocalBlock,
    RecursiveAttention,
    RecursiveBlock,
    ResidualGroup,
    conv_input,
    recursion_steps,
    reduced_length,
)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def reflect_pad(x: Tensor, bottom: int, right: int) -> Tensor:
    """Reflect-pad ``x`` (NCHW) at the bottom/right by any amount.

    Pads larger than the image are done in rounds (reflect needs ``pad < size``); a 1-pixel axis
    cannot be reflected and is replicated.
    """
    while bottom > 0 or right > 0:
        b = min(bottom, x.shape[-2] - 1)
        r = min(right, x.shape[-1] - 1)
        if b == 0 and r == 0:
            return F.pad(x, (0, right, 0, bottom), mode="replicate")
        x = F.pad(x, (0, r, 0, b), mode="reflect")
        bottom, right = bottom - b, right - r
    return x


class Reconstruction(nn.Module):
    """Conv to ``scale^2`` times the channels, pixel shuffle, conv to the output channels."""

    def __init__(self, dim: int, out_ch: int, scale: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim * scale * scale, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(scale)
        self.conv2 = nn.Conv2d(dim, out_ch, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.shuffle(self.conv1(x)))


class NHS2828RGT(nn.Module):
    """RGT as re-implemented by nhs2828: ``conv1`` -> residual groups -> ``conv2`` (+ skip) -> upsample.

    Args:
        in_ch: image channels (``dim_in``).
        out_ch: output channels (upstream: ``dim_in``).
        dim: embedding channels (``C``).
        depths: (local, recursive) block pairs per residual group (``N1`` groups of ``N2``).
        reduced_dim: RG-SA query/key channels (``int(C * cr)``).
        num_heads: attention heads (``nb_heads``).
        pos_dim: hidden width of the dynamic position bias (``C // 16``).
        mlp_hidden: MLP hidden width (``hidden_ratio * C``).
        scale: upscale factor.
        reduction_kernel: kernel of the RG-SA recursive depth-wise conv (4).
        stride_r: its stride (``s_r``).
        recursion_size: the forward argument ``h`` (16 at upstream test time).
    """

    def __init__(
        self,
        *,
        in_ch: int = 3,
        out_ch: int | None = None,
        dim: int = 180,
        depths: Sequence[int] = (6, 6),
        reduced_dim: int = 90,
        num_heads: int = 6,
        pos_dim: int = 11,
        mlp_hidden: int = 360,
        scale: int = 2,
        reduction_kernel: int = 4,
        stride_r: int = 4,
        recursion_size: int = 16,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.reduction_kernel = reduction_kernel
        self.stride_r = stride_r
        self.recursion_size = recursion_size

        def make_local() -> LocalBlock:
            return LocalBlock(dim, num_heads, pos_dim, mlp_hidden)

        def make_recursive() -> RecursiveBlock:
            attn = RecursiveAttention(dim, reduced_dim, num_heads, reduction_kernel, stride_r, recursion_size)
            return RecursiveBlock(dim, mlp_hidden, attn)

        self.conv1 = nn.Conv2d(in_ch, dim, 3, 1, 1)
        self.RGs = nn.ModuleList(ResidualGroup(dim, d, make_local, make_recursive) for d in depths)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.reconstruction = Reconstruction(dim, out_ch or in_ch, scale)
        self.geometry = attach_geometry_cache(self)
        ignore_derived_buffers(self)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """Smallest ``(H, W) >= (h, w)`` that upstream's forward accepts.

        H: a multiple of the window height with at least one RG-SA reduction step; W: a multiple
        of the window width that survives as many reductions as H needs.
        """
        wh, ww = WINDOW
        k, s, target = self.reduction_kernel, self.stride_r, self.recursion_size
        ph = max(_round_up(h, wh), _round_up(target * s, wh))
        while (
            recursion_steps(ph, target, s) < 1 or reduced_length(ph, recursion_steps(ph, target, s), k, s) < 1
        ):
            ph += wh
        steps = recursion_steps(ph, target, s)
        pw = _round_up(w, ww)
        while reduced_length(pw, steps, k, s) < 1:
            pw += ww
        return ph, pw

    def window_biases(self, x: Tensor) -> tuple[Tensor, ...]:
        """Position bias of every local block, built once per (device, dtype) while in inference."""

        def build() -> tuple[Tensor, ...]:
            return tuple(
                block.lsa.position_bias(x.device, x.dtype) for group in self.RGs for block in group.LSAs
            )

        if not use_cache(self):
            return build()
        return self.geometry.get(cache_key("nhs2828_window_bias", x), build)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        # Pad to a size the upstream forward accepts (cropped off at the end).
        ph, pw = self.padded_size(h, w)
        x = reflect_pad(x, ph - h, pw - w)
        # Channels-last tokens, kept contiguous so LayerNorms and linears need no copies.
        tokens = self.conv1(x).permute(0, 2, 3, 1).contiguous()
        # Residual groups, each with its slice of the window biases.
        biases = self.window_biases(tokens)
        body = tokens
        start = 0
        for group in self.RGs:
            body = group(body, biases[start : start + len(group.LSAs)])
            start += len(group.LSAs)
        merged = tokens + self.conv2(conv_input(body)).permute(0, 2, 3, 1)
        # Upsample and drop the padding.
        out = self.reconstruction(conv_input(merged))
        return out[..., : h * self.scale, : w * self.scale].contiguous()
