"""Reading RGT hyperparameters from a state dict (and traiNNer-redux metadata when present).

Shapes give everything but three values: the order of ``split_size`` (both branches' tables
have the same size; the saved training-size shift mask tells, when it is in the file), the
head count when ``num_heads`` is odd (each branch holds ``num_heads // 2``), and ``img_range``.
Metadata settles them; otherwise the choice is recorded in ``inferred``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from ..common.state import seq_len
from ..common.upsample import pixelshuffle_scale
from ..common.windows import shift_window_mask
from ..errors import ConfigError

StateDict = Mapping[str, Tensor]
OFFICIAL_SPLIT = (8, 32)
_MASK_KEY = re.compile(r"^layers\.\d+\.blocks\.\d+\.attn\.attn_mask_0$")


def read_config(sd: StateDict, meta: Mapping | None = None) -> tuple[dict, dict[str, str]]:
    """Constructor arguments for :class:`~.model.RGT` and ``{name: why it was inferred}``.

    Args:
        sd: the checkpoint's state dict (official key layout).
        meta: training hyperparameters (traiNNer-redux safetensors metadata), or None.
    """
    meta = dict(meta or {})
    inferred: dict[str, str] = {}
    embed_dim, in_chans = sd["conv_first.weight"].shape[:2]
    depth = [seq_len(sd, f"layers.{i}.blocks") for i in range(seq_len(sd, "layers"))]
    hidden = sd["layers.0.blocks.0.mlp.fc1.weight"].shape[0]
    c_ratio = _c_ratio(sd, depth, embed_dim, meta, inferred)
    config = {
        "scale": pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1,
        "in_chans": int(in_chans),
        "embed_dim": int(embed_dim),
        "depth": depth,
        "num_heads": _num_heads(sd, len(depth), embed_dim, c_ratio, meta, inferred),
        "mlp_ratio": _ratio(hidden, embed_dim),
        "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in sd,
        "split_size": _split_size(sd, meta, inferred),
        "c_ratio": c_ratio,
        "img_range": float(meta.get("img_range", 1.0)),
        "resi_connection": _resi_connection(sd),
    }
    if "img_range" not in meta:
        inferred["img_range"] = "1.0 assumed (not stored in weights)"
    if meta.get("qk_scale") is not None:
        raise ConfigError(
            f"RGT metadata sets qk_scale={meta['qk_scale']!r}; only the default scale is supported."
        )
    return config, inferred


def _resi_connection(sd: StateDict) -> str:
    if "conv_after_body.weight" in sd:
        return "1conv"
    if "conv_after_body.0.weight" in sd:
        return "3conv"
    raise ConfigError(
        "RGT weights have neither conv_after_body.weight (1conv) nor conv_after_body.0.weight (3conv)."
    )


def _c_ratio(sd: StateDict, depth: list[int], dim: int, meta: Mapping, inferred: dict) -> float:
    """RG-SA channel ratio from the first RG-SA conv (metadata wins when it agrees)."""
    group = next((i for i, d in enumerate(depth) if d >= 2), None)
    if group is None:
        inferred["c_ratio"] = "0.5 assumed (no RG-SA block in the weights, so unused)"
        return float(meta.get("c_ratio", 0.5))
    reduced = sd[f"layers.{group}.blocks.1.attn.conv.weight"].shape[0]
    wanted = meta.get("c_ratio")
    if wanted is not None and int(dim * wanted) == reduced:
        return float(wanted)
    return _ratio(reduced, dim)


def _ratio(channels: int, dim: int) -> float:
    """The float ``r`` nearest ``channels / dim`` for which ``int(dim * r) == channels`` (as the model computes)."""
    r = channels / dim
    while int(dim * r) < channels:
        r = math.nextafter(r, math.inf)
    return r


def _num_heads(
    sd: StateDict, groups: int, dim: int, c_ratio: float, meta: Mapping, inferred: dict
) -> list[int]:
    """Heads per group: each L-SA branch has ``heads // 2``, so an odd count is a guess."""
    heads = []
    wanted = list(meta.get("num_heads") or [])
    for i in range(groups):
        half = sd[f"layers.{i}.blocks.0.attn.attns.0.pos.pos3.2.weight"].shape[0]
        given = wanted[i] if i < len(wanted) else None
        if given is not None and given // 2 == half:
            heads.append(int(given))
            continue
        reduced = int(dim * c_ratio)
        even = 2 * half
        heads.append(even if dim % even == 0 and reduced % even == 0 else even + 1)
        if heads[-1] != even:
            inferred[f"num_heads[{i}]"] = f"{even + 1} assumed ({even} does not divide the channels)"
    return heads


def _split_size(sd: StateDict, meta: Mapping, inferred: dict) -> list[int]:
    """Window ``(height, width)`` of the first L-SA branch."""
    table_key = "layers.0.blocks.0.attn.attns.0.rpe_biases"
    index_key = "layers.0.blocks.0.attn.attns.0.relative_position_index"
    sides = None
    if table_key in sd and index_key in sd:
        sides = _window_sides(sd[index_key].shape[0], sd[table_key].shape[0])
    wanted = meta.get("split_size")
    if wanted is not None and (sides is None or sorted(wanted) == sorted(sides)):
        return [int(s) for s in wanted]
    if sides is None:
        inferred["split_size"] = f"{list(OFFICIAL_SPLIT)} assumed (official; no window tables saved)"
        return list(OFFICIAL_SPLIT)
    small, large = sorted(sides)
    if small == large:
        return [small, large]
    read = _order_from_mask(sd, small, large)
    if read is not None:
        return read
    inferred["split_size"] = f"[{small}, {large}] assumed (the order is not stored without a shift mask)"
    return [small, large]


def _window_sides(tokens: int, offsets: int) -> tuple[int, int]:
    """Solve ``a * b = tokens`` and ``(2a - 1)(2b - 1) = offsets`` for the window sides."""
    total = (4 * tokens + 1 - offsets) // 2  # a + b
    root = math.isqrt(max(0, total * total - 4 * tokens))
    a, b = (total - root) // 2, (total + root) // 2
    if a * b != tokens or (2 * a - 1) * (2 * b - 1) != offsets:
        raise ConfigError(
            f"RGT window tables ({tokens} tokens, {offsets} offsets) match no rectangle window."
        )
    return a, b


def _order_from_mask(sd: StateDict, small: int, large: int) -> list[int] | None:
    """Read the window orientation from a saved shift mask of the first branch, if any."""
    key = next((k for k in sd if _MASK_KEY.match(k)), None)
    if key is None:
        return None
    mask = sd[key].detach().to("cpu", torch.float32)
    n_win, tokens = mask.shape[0], mask.shape[-1]
    side = math.isqrt(n_win * tokens)
    if side * side != n_win * tokens or side % large:
        return None
    for wh, ww in ((small, large), (large, small)):
        expected = shift_window_mask(
            side, side, (wh, ww), (wh // 2, ww // 2), torch.device("cpu"), torch.float32
        )
        if expected.shape == mask.shape and torch.equal(expected != 0, mask != 0):
            return [wh, ww]
    return None
