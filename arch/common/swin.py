"""The Swin transformer layer of SwinIR-style models: (shifted) window attention and an MLP.

Keys follow the official checkpoints (``norm1``, ``attn.qkv``, ``attn.proj``,
``attn.relative_position_bias_table``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``); SwinIR's blocks and
DRCT's ``swinK`` layers are this layer. It works on channels-last token grids ``(B, H, W, C)``
whose sides are multiples of the window. Position biases and shift masks are not built here: the
model builds them once per (device, dtype) (``SRModel.cached_geometry``) and hands each layer the
tensors it needs.

Precision: the residual stream ``x`` may be float32 under half-precision weights
(common/stream.py); the attention and MLP branches see only layer-normed inputs and run in the
weights' dtype, their sums stay in the stream's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from einops import rearrange
from torch import Tensor, nn

from .linear import Linear, linear, linear_add
from .model import SRModel
from .position import lookup_position_bias
from .stream import norm_to
from .windows import shift_mask_kinds, window_partition, window_reverse, windowed_attention

B = TypeVar("B")


@dataclass(frozen=True)
class ShiftedWindows:
    """Where the windows of a cyclically shifted ``H x W`` token grid are (Swin's shifted windows).

    Attributes:
        gather: ``(H * W,)`` flat token indices: the tokens of each shifted window in raster
            order, windows of mask kind 0 first, then kinds 1, 2, 3 (:func:`~.windows.window_kind`).
        scatter: the inverse permutation (window order back to the grid).
        counts: windows of each kind.
    """

    gather: Tensor
    scatter: Tensor
    counts: tuple[int, int, int, int]


def shifted_windows(h: int, w: int, window: int, device: torch.device) -> ShiftedWindows:
    """The :class:`ShiftedWindows` of an ``h x w`` grid (multiples of ``window``) shifted by half a window."""
    shift = window // 2
    grid = torch.arange(h * w, device=device).view(1, h, w, 1)
    windows = window_partition(torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2)), window, window)
    gather = windows.squeeze(-1)[windows_by_kind(h // window, w // window, device)].flatten()
    scatter = torch.empty_like(gather)
    scatter[gather] = torch.arange(gather.numel(), device=device)
    return ShiftedWindows(gather, scatter, shifted_window_counts(h // window, w // window))


def windows_by_kind(rows: int, cols: int, device: torch.device) -> Tensor:
    """Raster indices of a ``rows x cols`` window grid, kind by kind (:func:`~.windows.window_kind`:
    interior, last column, last row, corner), raster order within a kind. Index arithmetic only
    (no sort), so it traces with symbolic sizes into any exporter."""
    r = torch.arange(rows - 1, device=device)
    c = torch.arange(cols - 1, device=device)
    last_r = torch.full((1,), rows - 1, device=device, dtype=r.dtype)
    last_c = torch.full((1,), cols - 1, device=device, dtype=c.dtype)
    parts = ((r, c), (r, last_c), (last_r, c), (last_r, last_c))
    return torch.cat([(pr[:, None] * cols + pc[None, :]).flatten() for pr, pc in parts])


def shifted_window_counts(rows: int, cols: int) -> tuple[int, int, int, int]:
    """Windows of each kind (:func:`~.windows.window_kind`) in a ``rows x cols`` shifted grid,
    from the grid's size alone (no device tensor is read back)."""
    return ((rows - 1) * (cols - 1), rows - 1, cols - 1, 1)


def swin_geometry(
    model: SRModel, x: Tensor, window: int, biases: Callable[[], B]
) -> tuple[B, Tensor, ShiftedWindows]:
    """What every Swin layer of one forward reads, from ``model``'s geometry cache, for features
    ``x`` ``(B, C, H, W)`` whose sides are multiples of ``window``.

    Returns:
        ``biases()`` (the family's position biases, once per device and dtype), the ``(4, 1, N, N)``
        shift masks (likewise: neither depends on the size) and the :class:`ShiftedWindows` of
        this ``H x W`` grid (once per size). Built eagerly on a cache miss; a compiled forward after
        the first tile of a shape only reads them: no host sync, nothing rebuilt per block.
    """
    h, w = x.shape[-2:]
    masks = model.cached_geometry("swin.shift_masks", x, lambda: shift_mask_kinds(window, x.device, x.dtype))
    order = model.cached_geometry(
        "swin.shifted_windows", x, lambda: shifted_windows(h, w, window, x.device), h, w
    )
    return model.cached_geometry("swin.position_biases", x, biases), masks, order


class Mlp(nn.Module):
    """Two linear layers with (exact) GELU between them (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``fc2(gelu(fc1(x)))``, plus ``residual`` when given (added inside the product on the CPU)."""
        hidden = linear(x, self.fc1.weight, self.fc1.bias, gelu=True)
        if residual is None:
            return self.fc2(hidden)
        return linear_add(hidden, self.fc2.weight, self.fc2.bias, residual)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias.

    Holds the parameters (``qkv``, ``proj``, the bias table); :class:`SwinLayer` applies the
    per-token projections where they are cheapest and :meth:`attend` inside the windows.

    Args:
        dim: channels of the tokens.
        heads: attention heads (``dim`` must be divisible by it).
        window: side of the square window.
        qkv_bias: whether the qkv projection has a bias.
    """

    def __init__(self, dim: int, heads: int, window: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.window = window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)

    def position_bias(self, index: Tensor) -> Tensor:
        """Per-head bias ``(heads, N, N)`` looked up with a relative-position ``index`` ``(N, N)``."""
        return lookup_position_bias(self.relative_position_bias_table, index)

    def attend(self, qkv: Tensor, bias: Tensor) -> Tensor:
        """Attention inside each window, between the qkv and output projections.

        Args:
            qkv: ``(B * nW, N, 3C)`` projected tokens of each window.
            bias: additive logits broadcastable to ``(B * nW, heads, N, N)``.
        Returns:
            ``(B * nW, N, C)``, before ``proj``.
        """
        q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=self.heads)
        return rearrange(windowed_attention(q, k, v, bias, self.scale), "b h n d -> b n (h d)")


class SwinLayer(nn.Module):
    """Pre-norm Swin transformer layer: (shifted) window attention, then an MLP, both residual.

    Args:
        dim: token channels.
        heads: attention heads.
        window: window side.
        shifted: whether windows are shifted by half a window (with the shift mask).
        mlp_hidden: hidden width of the MLP.
        qkv_bias: whether the qkv projection has a bias.
    """

    def __init__(
        self, dim: int, heads: int, window: int, shifted: bool, mlp_hidden: int, qkv_bias: bool = True
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2 if shifted else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: Tensor, pos_bias: Tensor, shift_masks: Tensor, order: ShiftedWindows) -> Tensor:
        """Args:
        x: ``(B, H, W, C)`` residual stream (float32, or the weights' dtype).
        pos_bias: ``(heads, N, N)`` relative-position bias of this layer.
        shift_masks: ``(4, 1, N, N)`` masks of the four shifted-window kinds (unused unshifted).
        order: the shifted grid's window order for this ``H x W`` (:func:`swin_geometry`: built
            once per size before the layers run, never per layer). Unused unshifted.
        """
        compute = self.attn.qkv.weight.dtype
        # branches run in the weights' dtype on normalised inputs; sums stay in the stream's dtype
        x = self._attend(norm_to(self.norm1, x, compute), pos_bias, shift_masks, order, residual=x)
        return self.mlp(norm_to(self.norm2, x, compute), residual=x)

    def _attend(
        self,
        x: Tensor,
        pos_bias: Tensor,
        shift_masks: Tensor,
        order: ShiftedWindows,
        residual: Tensor | None = None,
    ) -> Tensor:
        """The attention branch on normalised tokens ``x``, plus ``residual`` when given."""
        ws = self.window
        b, h, w, c = x.shape
        if not self.shift:
            # plain windows: one bias for all of them
            qkv = self.attn.qkv(window_partition(x, ws, ws))
            out = self.attn.attend(qkv, pos_bias.unsqueeze(0))
            return self._project(window_reverse(out, ws, ws, h, w), residual)
        # shifted windows: one gather puts the tokens of every shifted window together, windows
        # of one mask kind next to each other; project, attend kind by kind (one bias each),
        # scatter back and project the output (projections are per token, so order-free)
        qkv = self.attn.qkv(x.reshape(b, h * w, c).index_select(1, order.gather))
        out = qkv.new_empty(b, h * w, c)
        start = 0
        for kind, count in enumerate(order.counts):
            if count:
                tokens = slice(start, start + count * ws * ws)
                bias = (pos_bias + shift_masks[kind]).unsqueeze(0)
                attended = self.attn.attend(qkv[:, tokens].reshape(b * count, ws * ws, -1), bias)
                out[:, tokens] = attended.reshape(b, -1, c)
                start = tokens.stop
        return self._project(out.index_select(1, order.scatter).view(b, h, w, c), residual)

    def _project(self, x: Tensor, residual: Tensor | None) -> Tensor:
        proj = self.attn.proj
        return proj(x) if residual is None else linear_add(x, proj.weight, proj.bias, residual)
