"""ATD layers and residual groups (key names follow the official checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.residual import residual_conv, residual_conv_from_stream
from ..common.stream import fp16_scale, norm_to
from .attention import CategoryAttention, TokenDictionaryAttention
from .windows import WindowAttention, WindowGeometry


@dataclass(frozen=True)
class LayerInputs:
    """What every layer of one forward shares: token grid size and the cached geometry."""

    size: tuple[int, int]  # (H, W) of the padded token grid
    geometry: WindowGeometry  # window orders and shift masks
    exact: bool  # official op order (float32) instead of SDPA
    dtype: torch.dtype  # the weights' dtype; the residual stream may be float32 (common/stream.py)
    stable: bool = False  # token categories in the stable order on every device (ATD.stable_order)


def tokens_to_image(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, HW, C)`` -> ``(B, C, H, W)`` as a view (channels-last strides, like the official)."""
    return x.transpose(1, 2).unflatten(2, size)


def image_to_tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, HW, C)`` view."""
    return x.flatten(2).transpose(1, 2)


class DepthwiseConv(nn.Module):
    """Depthwise conv + GELU on a token sequence (keys ``depthwise_conv.0``).

    Args:
        channels: hidden channels.
        kernel_size: odd kernel side.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.depthwise_conv = nn.Sequential(conv, nn.GELU())

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return image_to_tokens(self.depthwise_conv(tokens_to_image(x, size).contiguous()))


class ConvFFN(nn.Module):
    """MLP with a depthwise-conv branch between its two linears.

    Args:
        dim: channels.
        hidden: hidden channels (``dim * mlp_ratio``).
        kernel_size: depthwise kernel side.
    """

    def __init__(self, dim: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = DepthwiseConv(hidden, kernel_size)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x, size))


class ATDLayer(nn.Module):
    """One ATD transformer layer: three attentions on shared qkv, ConvFFN, dictionary refinement.

    Args:
        dim: channels.
        num_heads: attention heads.
        window: window side.
        shifted: shift windows by half a window (odd layers).
        category_size: AC-MSA group size.
        num_tokens: dictionary entries.
        reducted_dim: TDCA query/key channels.
        kernel_size: ConvFFN depthwise kernel.
        mlp_ratio: ConvFFN hidden ratio.
        qkv_bias: biases on the qkv projections.
        refine: update the dictionary after this layer (every layer but the group's last).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shifted: bool,
        category_size: int,
        num_tokens: int,
        reducted_dim: int,
        kernel_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        refine: bool,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted else 0
        self.refine = refine
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        if refine:
            self.norm3 = nn.InstanceNorm1d(num_tokens, affine=True)
            self.sigma = nn.Parameter(torch.zeros(num_tokens, 1))
        self.wqkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_win = WindowAttention(dim, window, num_heads)
        self.attn_atd = TokenDictionaryAttention(dim, num_tokens, reducted_dim, qkv_bias)
        self.attn_aca = CategoryAttention(dim, num_heads, category_size, qkv_bias)
        self.convffn = ConvFFN(dim, int(dim * mlp_ratio), kernel_size)

    def window_attention(self, qkv: Tensor, bias: Tensor, inp: LayerInputs) -> Tensor:
        """(Shifted) window attention on ``(B, HW, 3C)`` -> ``(B, HW, C)``."""
        geo = inp.geometry
        n_tokens = self.window * self.window
        # roll + window partition as one gather (and the inverse after the attention)
        windows = qkv.index_select(1, geo.to_windows[self.shift]).view(-1, n_tokens, qkv.shape[-1])
        out = self.attn_win(windows, bias, geo if self.shift else None, inp.exact)
        return out.view(qkv.shape[0], -1, out.shape[-1]).index_select(1, geo.to_image[self.shift])

    def refine_dictionary(self, td: Tensor, x: Tensor, sim: Tensor) -> Tensor:
        """Blend each dictionary entry with the tokens it attracted (adaptive refinement)."""
        norm = self.norm3  # in float32 like ``sim`` (a no-op cast for float32 models)
        weights = F.instance_norm(
            sim.transpose(-1, -2), weight=norm.weight.float(), bias=norm.bias.float(), eps=norm.eps
        )
        weights = weights.softmax(dim=-1)  # (B, m, n)
        keep = torch.sigmoid(self.sigma)
        scale = fp16_scale(x, self.sigma.dtype)
        if scale is None:
            weights = weights.to(td.dtype)
            return keep * td + (1 - keep) * torch.einsum("btn,bnc->btc", weights, x.to(td.dtype))
        # fp16 weights: the blend reads the raw float32 stream, which may exceed fp16's range. Scale
        # it by a power of two for the product and keep the dictionary in float32 from here on.
        half = self.sigma.dtype
        mix = torch.einsum("btn,bnc->btc", weights.to(half), (x / scale).to(half)).float() * scale
        keep = keep.float()
        return keep * td.float() + (1 - keep) * mix

    def forward(self, x: Tensor, td: Tensor, bias: Tensor, inp: LayerInputs) -> tuple[Tensor, Tensor]:
        """Args: x ``(B, HW, C)`` residual stream; td ``(B, m, C)``; bias this layer's position bias.

        The branches run in ``inp.dtype`` on normalised tokens; their sums stay in ``x``'s dtype.
        """
        xn = norm_to(self.norm1, x, inp.dtype)
        qkv = self.wqkv(xn)
        # the three attentions read the same normalised tokens
        x_atd, sim = self.attn_atd(xn, td)
        x_aca = self.attn_aca(qkv, sim, inp.exact, inp.stable)
        x_win = self.window_attention(qkv, bias, inp)
        x = x + x_win
        x += x_atd
        x += x_aca
        x = x + self.convffn(norm_to(self.norm2, x, inp.dtype), inp.size)
        if self.refine:
            td = self.refine_dictionary(td, x, sim)
        return x, td


class TokenDictionaryLayers(nn.Module):
    """The layers of one group and their shared, layer-by-layer refined dictionary (``td``)."""

    def __init__(self, depth: int, num_tokens: int, dim: int, **layer_args) -> None:
        super().__init__()
        self.td = nn.Parameter(torch.randn(num_tokens, dim))
        self.layers = nn.ModuleList(
            ATDLayer(dim, shifted=i % 2 == 1, num_tokens=num_tokens, refine=i < depth - 1, **layer_args)
            for i in range(depth)
        )

    def forward(self, x: Tensor, biases: list[Tensor], inp: LayerInputs) -> Tensor:
        td = self.td.expand(x.shape[0], -1, -1)
        for layer, bias in zip(self.layers, biases, strict=True):
            x, td = layer(x, td, bias, inp)
        return x


class ResidualGroup(nn.Module):
    """Residual adaptive-token-dictionary block (official ATDB): layers, conv, skip.

    Args:
        depth: layers in the group.
        dim: channels.
        resi_connection: ``1conv`` or ``3conv``.
        layer_args: the remaining :class:`ATDLayer` arguments.
    """

    def __init__(self, depth: int, dim: int, resi_connection: str, **layer_args) -> None:
        super().__init__()
        self.depth = depth
        self.residual_group = TokenDictionaryLayers(depth, dim=dim, **layer_args)
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: Tensor, biases: list[Tensor], inp: LayerInputs) -> Tensor:
        y = self.residual_group(x, biases, inp)
        return (
            image_to_tokens(residual_conv_from_stream(self.conv, tokens_to_image(y, inp.size), inp.dtype)) + x
        )
