"""The attentions of an ATD layer: token dictionary and token categories, and the shared kernels.

The (shifted) window attention is in :mod:`.windows`.

Two arithmetic paths (see :class:`~.model.ATD` ``exact_fp32``):

* **exact** (float32 by default): the official operation order — ``(q * scale) @ k^T``, bias
  added, ``softmax``, ``@ v``. ATD groups tokens by an ``argmax`` whose top two scores are often
  within one float32 ulp, so a rounding difference anywhere upstream (SDPA instead of the
  explicit softmax is enough) moves tokens to another category and changes the output by up to
  ~0.2. Only the official arithmetic reproduces the official output.
* **fast** (bf16/fp16, ``exact_fp32=False``, or float32 with TF32 on, where no op order can
  be exact): ``scaled_dot_product_attention``.

Both paths add the shift mask only to the windows that need it (the last window row and
column); everywhere else the official mask is zero, so skipping the addition changes nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.attention import attention
from ..common.stream import float32_forward, fp16_scale

if TYPE_CHECKING:
    from .windows import WindowGeometry


def split_heads(qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(..., N, 3C)`` -> q, k, v views of shape ``(..., heads, N, C / heads)``."""
    *lead, n, c3 = qkv.shape
    parts = qkv.reshape(*lead, n, 3, num_heads, c3 // (3 * num_heads))
    q, k, v = parts.movedim(-3, 0).transpose(-3, -2).unbind(0)
    return q, k, v


# ----------------------------------------------------------------------------- attention kernels

# Logits per chunk on the CPU: chunks that fit in cache go through matmul, bias, softmax and
# matmul without a round trip to memory (bit-identical to one pass; ~2x faster single-threaded
# at 128 px). Not smaller: many small ops stall when CPU threads are oversubscribed.
CPU_CHUNK_BYTES = 8 << 20


def _chunk(q: Tensor) -> int:
    """Items (windows or groups) per chunk: about even chunks of at most CPU_CHUNK_BYTES."""
    total = q.shape[0]
    if q.device.type != "cpu" or torch.compiler.is_exporting():  # an exported graph: one pass
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
    # one chunk without range(): an exported graph's symbolic size cannot be iterated over
    for i in (0,) if step == total and total else range(0, total, step):
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
        k = self.wk(td).float() if td.dtype == x.dtype else float32_forward(self.wk, td)
        sim = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        sim = sim * (1 + self.scale.float().clamp(0, 1) * math.log(self.num_tokens))
        sim = sim.softmax(dim=-1)
        if td.dtype == x.dtype:
            return sim.to(x.dtype) @ self.wv(td), sim
        # a float32 dictionary refined from a stream beyond fp16's range (see ATDLayer.refine_dictionary)
        v = float32_forward(self.wv, td)
        scale = fp16_scale(v, x.dtype)
        return (sim.to(x.dtype) @ (v / scale).to(x.dtype)).float() * scale, sim


def ieee_float32(device: torch.device) -> bool:
    """Whether float32 matmuls and convolutions on ``device`` run in IEEE float32, so the exact
    path can reproduce the official arithmetic: always on the CPU; on CUDA only with TF32 off
    (PyTorch's default lets cuDNN convolutions use TF32, whose rounding alone moves near-tied
    tokens; the engine's fp32 runs turn it off). Elsewhere: assumed."""
    if device.type != "cuda":
        return True
    try:
        return not (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # legacy and per-operation TF32 settings mixed: torch cannot say
        return False


def category_order(sim: Tensor, stable: bool = False) -> Tensor:
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

    ``stable``: the stable order on the CPU too. An exported graph always has it, from unique
    keys (category, then token index) that a plain sort (ONNX ``TopK``) orders the same anywhere.
    """
    category = sim.argmax(dim=-1)
    if torch.compiler.is_exporting():
        n = category.shape[-1]
        return torch.sort(category * n + torch.arange(n, device=category.device), dim=-1).indices
    if sim.device.type == "cpu" and not stable:
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

    def forward(self, qkv: Tensor, sim: Tensor, exact: bool, stable: bool = False) -> Tensor:
        """Args: qkv ``(B, n, 3C)``; sim ``(B, n, m)`` from the token-dictionary attention;
        stable: the stable category order on every device (:func:`category_order`)."""
        b, n, c3 = qkv.shape
        # a comparison, not min(): an exported graph decides it from its size range (no symbolic min)
        size = self.category_size if n >= self.category_size else n
        groups = (n + size - 1) // size  # not -(-n // size): ONNX's Div truncates negative sizes
        # sorted order, padded by the last tokens mirrored so the groups fill up
        order = category_order(sim, stable)
        pad = groups * size - n
        padded = torch.cat((order, order[:, n - pad :].flip(-1)), dim=1)
        rows = (padded + n * torch.arange(b, device=qkv.device)[:, None]).flatten()
        grouped = qkv.flatten(0, 1).index_select(0, rows).view(b, groups, size, c3)
        q, k, v = (t.flatten(0, 1) for t in split_heads(grouped, self.num_heads))
        if exact:
            out = reference_attention(q, k, v, temperature=self.temperature())
        else:
            out = attention(q * self.temperature(), k, v, scale=1.0).transpose(1, 2)
        # back to image order (a gather: no arithmetic)
        inverse = torch.empty_like(order).scatter_(
            1, order, torch.arange(n, device=order.device).expand(b, n)
        )
        rows = (inverse + groups * size * torch.arange(b, device=order.device)[:, None]).flatten()
        out = out.reshape(b * groups * size, c3 // 3).index_select(0, rows)
        return self.proj(out.view(b, n, -1))
