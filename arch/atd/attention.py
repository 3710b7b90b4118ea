"""The three attentions of an ATD layer: shifted windows, token dictionary, token categories.

Two arithmetic paths (see :class:`~.model.ATD` ``exact_fp32``):

* **exact** (float32 by default): the official operation order — ``(q * scale) @ k^T``, bias
  added, ``softmax``, ``@ v``. ATD groups tokens by an ``argmax`` whose top two scores are often
  within one float32 ulp, so a rounding difference anywhere upstream (SDPA instead of the
  explicit softmax is enough) moves tokens to another category and changes the output by up to
  ~0.2. Only the official arithmetic reproduces the official output.
* **fast** (bf16/fp16, or ``exact_fp32=False``): ``scaled_dot_product_attention``.

Both paths add the shift mask only to the windows that need it (the last window row and
column); everywhere else the official mask is zero, so skipping the addition changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.stream import fp16_scale
from ..common.windows import shift_window_mask, window_partition, windowed_attention


def split_heads(qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(..., N, 3C)`` -> q, k, v views of shape ``(..., heads, N, C / heads)``."""
    *lead, n, c3 = qkv.shape
    parts = qkv.reshape(*lead, n, 3, num_heads, c3 // (3 * num_heads))
    q, k, v = parts.movedim(-3, 0).transpose(-3, -2).unbind(0)
    return q, k, v


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class WindowGeometry:
    """Everything the window attention needs for one token-grid size, device and dtype.

    ``to_windows[shift]`` lists, for each token slot of the (rolled) windows in raster order, the
    image token it reads: rolling and partitioning become one ``index_select``; ``to_image[shift]``
    is the inverse. Shift masks are kept only for the windows that have masked pairs (the last
    window row and column); elsewhere the official mask is zero, so skipping it changes nothing.
    """

    size: tuple[int, int]
    grid: tuple[int, int]  # windows per column, per row
    to_windows: dict[int, Tensor]
    to_image: dict[int, Tensor]
    row_masks: Tensor  # (nw, 1, N, N): last window row
    col_masks: Tensor  # (nh - 1, 1, N, N): last window column above the corner
    window_masks: tuple[Tensor | None, ...]  # per window in raster order: its mask or None

    def add_masks_(self, attn: Tensor, start: int) -> None:
        """Add shift masks in place to logits ``(k, heads, N, N)`` of windows ``start .. start + k``."""
        nh, nw = self.grid
        if start % (nh * nw) == 0 and attn.shape[0] % (nh * nw) == 0:  # whole images: two adds
            grid = attn.view(-1, nh, nw, *attn.shape[1:])
            grid[:, -1] += self.row_masks
            grid[:, :-1, -1] += self.col_masks
            return
        for j in range(attn.shape[0]):
            mask = self.window_masks[(start + j) % (nh * nw)]
            if mask is not None:
                attn[j] += mask


def build_window_geometry(
    h: int, w: int, window: int, device: torch.device, dtype: torch.dtype
) -> WindowGeometry:
    """Window orders and shift masks for a ``h x w`` token grid, built on ``device``."""
    nh, nw = h // window, w // window
    shift = window // 2
    tokens = torch.arange(h * w, device=device).view(1, h, w, 1)
    to_windows, to_image = {}, {}
    for s in (0, shift):
        order = window_partition(tokens.roll((-s, -s), dims=(1, 2)), window, window).flatten()
        to_windows[s] = order
        to_image[s] = torch.empty_like(order).scatter_(0, order, torch.arange(h * w, device=device))
    full = shift_window_mask(h, w, (window, window), (shift, shift), device, dtype)
    full = full.view(nh, nw, 1, *full.shape[-2:])
    rows, cols = full[-1].clone(), full[:-1, -1].clone()
    per_window: list[Tensor | None] = [None] * (nh * nw)
    for c in range(nw):
        per_window[(nh - 1) * nw + c] = rows[c]
    for r in range(nh - 1):
        per_window[r * nw + nw - 1] = cols[r]
    return WindowGeometry((h, w), (nh, nw), to_windows, to_image, rows, cols, tuple(per_window))


# ----------------------------------------------------------------------------- attention kernels

# Logits per chunk on the CPU: chunks that fit in cache go through matmul, bias, softmax and
# matmul without a round trip to memory (bit-identical to one pass; ~2x faster single-threaded
# at 128 px). Not smaller: many small ops stall when CPU threads are oversubscribed.
CPU_CHUNK_BYTES = 8 << 20


def _chunk(q: Tensor) -> int:
    """Items (windows or groups) per chunk: about even chunks of at most CPU_CHUNK_BYTES."""
    total = q.shape[0]
    if q.device.type != "cpu":
        return total
    per_item = q.shape[1] * q.shape[2] ** 2 * q.element_size()
    chunks = -(-total * per_item // CPU_CHUNK_BYTES)
    return -(-total // chunks)


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    temperature: Tensor | None = None,
    bias: Tensor | None = None,
    geometry: WindowGeometry | None = None,
) -> Tensor:
    """Attention in the official op order: ``softmax((q * scale) @ k^T * temperature + bias [+ mask]) @ v``.

    Args:
        q, k, v: ``(B', heads, N, d)``.
        scale: multiplies q before the product (window attention).
        temperature: multiplies the product (category attention).
        bias: ``(heads, N, N)`` position bias.
        geometry: adds the shift masks (B' windows in raster order).
    Returns:
        ``(B', N, heads, d)`` (heads merged by a free view).
    """
    total, heads, n, d = q.shape
    # the contiguous operands the official matmuls copy to internally, made once
    q = torch.mul(q, scale if scale is not None else 1.0, out=q.new_empty(q.shape))
    k_t = k.transpose(-2, -1).contiguous()
    v = v.contiguous()
    out = q.new_empty(total, n, heads, d)
    step = _chunk(q)
    for i in range(0, total, step):
        sel = slice(i, i + step)
        attn = q[sel] @ k_t[sel]
        if temperature is not None:
            attn *= temperature
        if bias is not None:
            attn += bias
        if geometry is not None:
            geometry.add_masks_(attn, i)
        out[sel] = (attn.softmax(dim=-1) @ v[sel]).transpose(1, 2)
    return out


def _shifted_sdpa(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, geo: WindowGeometry, scale: float) -> Tensor:
    """SDPA over shifted windows: interior windows share the position bias, border windows
    get ``bias + mask`` for just themselves (never a bias for every window)."""
    nh, nw = geo.grid
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    qg, kg, vg, og = (t.unflatten(0, (-1, nh, nw)) for t in (q, k, v, out))
    batch = og.shape[0]

    def attend(sel: tuple, attn_bias: Tensor) -> None:
        if og[sel].numel():
            parts = [t[sel].flatten(0, -4) for t in (qg, kg, vg)]
            res = F.scaled_dot_product_attention(*parts, attn_mask=attn_bias, scale=scale)
            og[sel] = res.view(og[sel].shape)

    every = slice(None)
    attend((every, slice(None, -1), slice(None, -1)), bias[None])  # 4-D: CPU SDPA's fused path
    attend((every, -1), (bias + geo.row_masks).repeat(batch, 1, 1, 1))
    attend((every, slice(None, -1), -1), (bias + geo.col_masks).repeat(batch, 1, 1, 1))
    return out.transpose(1, 2)


# ----------------------------------------------------------------------------- modules


class WindowAttention(nn.Module):
    """(Shifted) window self-attention with a learned relative-position bias.

    Args:
        dim: channels.
        window: window side.
        num_heads: attention heads.
    """

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, index: Tensor) -> Tensor:
        """``(heads, N, N)`` bias from the table and a relative-position index ``(N, N)``."""
        n = index.shape[0]
        bias = self.relative_position_bias_table[index.reshape(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous()

    def forward(self, qkv: Tensor, bias: Tensor, geo: WindowGeometry | None, exact: bool) -> Tensor:
        """Args:
        qkv: windows ``(B * nW, N, 3C)`` in raster window order.
        bias: position bias ``(heads, N, N)`` in the compute dtype.
        geo: window geometry for a shifted layer (its masks), None for an unshifted one.
        exact: official op order (see module docstring) instead of SDPA.
        """
        q, k, v = split_heads(qkv, self.num_heads)
        if exact:
            out = reference_attention(q, k, v, scale=self.scale, bias=bias, geometry=geo)
        elif geo is None:
            out = windowed_attention(q, k, v, bias[None], self.scale).transpose(1, 2)
        else:
            out = _shifted_sdpa(q, k, v, bias, geo, self.scale)
        return self.proj(out.flatten(-2))


class TokenDictionaryAttention(nn.Module):
    """Token-dictionary cross-attention (TDCA): image tokens query a small learned dictionary.

    Returns the attended features and the similarity map ``(B, n, m)`` that categorises tokens.

    Args:
        dim: channels.
        num_tokens: dictionary entries ``m``.
        reducted_dim: channels of the (cosine) query/key projection.
        qkv_bias: biases on the projections.
    """

    def __init__(self, dim: int, num_tokens: int, reducted_dim: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.wq = nn.Linear(dim, reducted_dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, reducted_dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=qkv_bias)
        self.scale = nn.Parameter(torch.full((num_tokens,), 0.5))

    def forward(self, x: Tensor, td: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x ``(B, n, C)`` normalised tokens; td ``(B, m, C)`` dictionary.

        Returns ``(B, n, C)`` features and the float32 similarity map ``(B, n, m)``.
        """
        # similarities in float32 even for half inputs: bf16 probabilities tie all the time
        q = self.wq(x).float()
        k = self.wk(td).float() if td.dtype == x.dtype else _linear32(self.wk, td)
        sim = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        sim = sim * (1 + self.scale.float().clamp(0, 1) * math.log(self.num_tokens))
        sim = sim.softmax(dim=-1)
        if td.dtype == x.dtype:
            return sim.to(x.dtype) @ self.wv(td), sim
        # a float32 dictionary refined from a stream beyond fp16's range (see ATDLayer.refine_dictionary)
        v = _linear32(self.wv, td)
        scale = fp16_scale(v, x.dtype)
        return (sim.to(x.dtype) @ (v / scale).to(x.dtype)).float() * scale, sim


def _linear32(layer: nn.Linear, x: Tensor) -> Tensor:
    """``layer(x)`` in float32 whatever the layer's dtype (for the small dictionary)."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


def category_order(sim: Tensor) -> Tensor:
    """Token order that lists tokens category by category: ``(B, n)`` indices.

    A token's category is its most similar dictionary entry. Many tokens share a category, and
    the order *inside* a category decides which tokens meet in an attention group. The official
    code sorts with ``torch.sort(stable=False)``; on the CPU that is a deterministic introsort
    whose tie order we reproduce by making the very same call (checked identical across CPU
    kernel levels AVX2/AVX512/default and torch 2.13/2.14). On other devices the unstable order
    is whatever that backend's sort does, so we ask for ``stable=True`` there: ties keep token
    order, the grouping is deterministic and the same on every accelerator (CUDA's radix/merge
    sorts produce this order for these lengths anyway). Expect CPU and GPU outputs to differ
    by up to ~0.4 max abs for the same weights and input, as the official code does.
    """
    category = sim.argmax(dim=-1)
    if sim.device.type == "cpu":
        return torch.sort(category, dim=-1, stable=False).indices
    return torch.sort(category, dim=-1, stable=True).indices


class CategoryAttention(nn.Module):
    """Adaptive category-based self-attention (AC-MSA) over fixed-size groups of sorted tokens.

    Args:
        dim: channels.
        num_heads: attention heads.
        category_size: tokens per attention group (the last group is filled up by mirroring).
        qkv_bias: bias on the output projection (official quirk).
    """

    def __init__(self, dim: int, num_heads: int, category_size: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.category_size = category_size
        self.proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.logit_scale = nn.Parameter(torch.full((1, 1), math.log(10.0)))

    def temperature(self) -> Tensor:
        """Learned logit multiplier, at most 100 (official clamp)."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def forward(self, qkv: Tensor, sim: Tensor, exact: bool) -> Tensor:
        """Args: qkv ``(B, n, 3C)``; sim ``(B, n, m)`` from the token-dictionary attention."""
        b, n, c3 = qkv.shape
        size = min(n, self.category_size)
        groups = -(-n // size)
        # sorted order, padded by the last tokens mirrored so the groups fill up
        order = category_order(sim)
        pad = groups * size - n
        padded = torch.cat((order, order[:, n - pad :].flip(-1)), dim=1)
        rows = (padded + n * torch.arange(b, device=qkv.device)[:, None]).flatten()
        grouped = qkv.flatten(0, 1).index_select(0, rows).view(b, groups, size, c3)
        q, k, v = (t.flatten(0, 1) for t in split_heads(grouped, self.num_heads))
        if exact:
            out = reference_attention(q, k, v, temperature=self.temperature())
        else:
            out = F.scaled_dot_product_attention(q * self.temperature(), k, v, scale=1.0).transpose(1, 2)
        # back to image order (a gather: no arithmetic)
        inverse = torch.empty_like(order).scatter_(
            1, order, torch.arange(n, device=order.device).expand(b, n)
        )
        rows = (inverse + groups * size * torch.arange(b, device=order.device)[:, None]).flatten()
        out = out.reshape(b * groups * size, c3 // 3).index_select(0, rows)
        return self.proj(out.view(b, n, -1))
