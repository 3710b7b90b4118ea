"""The nhs2828 unofficial RGT (github nhs2828/Recursive-Generalization-Transformer_), inference only.

Upstream's forward takes the RG-SA recursion target ``h`` as an argument and only accepts inputs
with ``H % 8 == 0``, ``W % 32 == 0`` and ``H >= 64`` (for ``h = 16``). Ours stores ``h`` as
``recursion_size`` and accepts any size: it reflect-pads bottom/right to the smallest size the
upstream forward accepts, runs, and crops the output.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..common.image import pad_bottom_right
from ..common.model import SideRange, SRModel, attention_elements, token_elements, upsampler_elements
from ..common.state import ignore_derived_buffers
from .blocks import (
    LocalBlock,
    RecursiveAttention,
    RecursiveBlock,
    ResidualGroup,
    conv_input,
    recursion_steps,
    reduced_length,
)
from .config import WINDOW, NHS2828Config

# Heights an exported graph's range is searched to (the step count changes only at powers of s_r)
EXPORT_MAX_SIDE = 1 << 14


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class Reconstruction(nn.Module):
    """Conv to ``scale^2`` times the channels, pixel shuffle, conv to the output channels."""

    def __init__(self, dim: int, out_ch: int, scale: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim * scale * scale, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(scale)
        self.conv2 = nn.Conv2d(dim, out_ch, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.shuffle(self.conv1(x)))


class NHS2828RGT(SRModel):
    """RGT as re-implemented by nhs2828: ``conv1`` -> residual groups -> ``conv2`` (+ skip) -> upsample.

    Args:
        config: the hyperparameters (default: upstream's x2 model).
    """

    def __init__(self, config: NHS2828Config | None = None) -> None:
        super().__init__(config or NHS2828Config())
        c = self.config
        dim, hidden = c.embed_dim, c.mlp_hidden

        def group(depth: int, heads: int) -> ResidualGroup:
            def make_local() -> LocalBlock:
                return LocalBlock(dim, heads, c.pos_dim, hidden)

            def make_recursive() -> RecursiveBlock:
                attn = RecursiveAttention(
                    dim, c.reduced_dim, heads, c.reduction_kernel, c.stride_r, c.recursion_size
                )
                return RecursiveBlock(dim, hidden, attn)

            return ResidualGroup(dim, depth, make_local, make_recursive)

        self.conv1 = nn.Conv2d(c.in_chans, dim, 3, 1, 1)
        self.RGs = nn.ModuleList(group(d, h) for d, h in zip(c.depths, c.num_heads, strict=True))
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.reconstruction = Reconstruction(dim, c.out_chans, c.scale)
        ignore_derived_buffers(self)

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Block activations at the real width, the window attention or RG-SA's (its key count is
        the recursively reduced padded tile), and the reconstruction (``dim x scale^2`` channels)."""
        c = self.config
        ph, pw = self.padded_size(tile_h, tile_w)
        steps = recursion_steps(ph, c.recursion_size, c.stride_r)
        summary = reduced_length(ph, steps, c.reduction_kernel, c.stride_r) * reduced_length(
            pw, steps, c.reduction_kernel, c.stride_r
        )
        return (
            token_elements(c.embed_dim, c.mlp_ratio, fp32_stream=False)
            + attention_elements(max(c.num_heads), max(WINDOW[0] * WINDOW[1], summary))
            + upsampler_elements(c.scale, c.embed_dim)
        )

    def preferred_tile_multiple(self) -> int:
        """The window's long side: tiles need no padding to whole windows."""
        return max(WINDOW)

    def export_size_range(self, h: int, w: int) -> tuple[SideRange, SideRange]:
        """Sizes that need no padding, with as many RG-SA steps as ``h`` (a different count is a
        different graph): heights in one step band, widths from the smallest that survives them."""
        m = self.preferred_tile_multiple()
        (low, _), _ = super().export_size_range(h, w)
        c = self.config
        steps = recursion_steps(h, c.recursion_size, c.stride_r)

        def fits(height: int, width: int) -> bool:
            same = recursion_steps(height, c.recursion_size, c.stride_r) == steps
            return same and self.padded_size(height, width) == (height, width)

        if not fits(h, w):
            return (h, h), (w, w)  # a size the forward pads: only itself
        top, bottom = h, h
        while bottom - m >= low and fits(bottom - m, w):
            bottom -= m
        while top < EXPORT_MAX_SIDE and fits(top + m, w):
            top += m
        left = w
        while left - m >= low and fits(h, left - m):
            left -= m
        return (bottom, top), (left, None)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """Smallest ``(H, W) >= (h, w)`` that upstream's forward accepts.

        H: a multiple of the window height with at least one RG-SA reduction step; W: a multiple
        of the window width that survives as many reductions as H needs. An exported graph's
        symbolic sizes need none (:meth:`export_size_range` holds only such sizes).
        """
        if not (isinstance(h, int) and isinstance(w, int)):
            return h, w
        wh, ww = WINDOW
        k, s, target = self.config.reduction_kernel, self.config.stride_r, self.config.recursion_size
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
        """Position bias of every local block, built once per (device, dtype)."""

        def build() -> tuple[Tensor, ...]:
            return tuple(
                block.lsa.position_bias(x.device, x.dtype) for group in self.RGs for block in group.LSAs
            )

        return self.cached_geometry("nhs2828.window_biases", x, build)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        # Pad to a size the upstream forward accepts (cropped off at the end).
        ph, pw = self.padded_size(h, w)
        x = pad_bottom_right(x, ph - h, pw - w, "reflect")
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
