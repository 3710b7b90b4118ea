"""RGT's config: the frozen :class:`RGTConfig` and reading it from a state dict.

Shapes give everything but three values: the order of ``split_size`` (both branches' tables
have the same size; the saved training-size shift mask tells, when it is in the file), the
head count when ``num_heads`` is odd (each branch holds ``num_heads // 2``), and ``img_range``.
traiNNer-redux metadata settles them; otherwise the choice is recorded in ``inferred``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.config import ModelConfig, exact_ratio
from ..common.metadata import bad_value, given, meta_float, meta_img_range, meta_int_list, shown
from ..common.residual import residual_conv_kind
from ..common.state import seq_len
from ..common.upsample import pixelshuffle_scale
from ..common.windows import shift_window_mask
from ..errors import ConfigError

StateDict = Mapping[str, Tensor]
OFFICIAL_SPLIT = (8, 32)
_MASK_KEY = re.compile(r"^layers\.\d+\.blocks\.\d+\.attn\.attn_mask_0$")
# Official release configs: groups -> name, for embed 180, 6 heads, 6 blocks, MLP 2, c_ratio 0.5.
_VARIANTS = {8: "RGT", 6: "RGT-S"}
MAX_SPLIT = 256  # window side (official 8 x 32); the attention grows with its area squared


@dataclass(frozen=True, kw_only=True)
class RGTConfig(ModelConfig):
    """RGT hyperparameters (shared fields: :class:`~..common.config.ModelConfig`).

    Args:
        depths: blocks per residual group (alternating L-SA and RG-SA).
        qkv_bias: whether the attention projections have biases.
        split_size: ``(height, width)`` of the rectangle windows of the first L-SA branch
            (the second branch uses the transposed shape).
        c_ratio: RG-SA channel ratio of queries/keys.
        img_range: factor applied to the mean-subtracted input (and undone at the end).
        resi_connection: ``"1conv"`` or ``"3conv"``: the conv closing each group and the body.
    """

    depths: tuple[int, ...] = (6,) * 8
    num_heads: tuple[int, ...] = (6,) * 8
    qkv_bias: bool = True
    split_size: tuple[int, int] = OFFICIAL_SPLIT
    c_ratio: float = 0.5
    img_range: float = 1.0
    resi_connection: str = "1conv"

    @property
    def variant(self) -> str:
        """``RGT`` / ``RGT-S`` for the official release configs, else ``RGT (custom)``."""
        official = (
            (self.embed_dim, self.mlp_ratio, self.c_ratio, self.in_chans, self.resi_connection)
            == (180, 2.0, 0.5, 3, "1conv")
            and sorted(self.split_size) == sorted(OFFICIAL_SPLIT)
            and set(self.depths) == {6}
            and set(self.num_heads) == {6}
        )
        return _VARIANTS.get(len(self.depths), "RGT (custom)") if official else "RGT (custom)"


def read_config(sd: StateDict, metadata: Mapping | None = None) -> tuple[RGTConfig, dict[str, str]]:
    """The :class:`RGTConfig` of a state dict and ``{name: why it was inferred}``.

    Args:
        sd: the checkpoint's state dict (official key layout).
        metadata: training hyperparameters (traiNNer-redux safetensors metadata), or None.
    """
    meta = dict(metadata or {})
    if given(meta, "qk_scale"):
        raise ConfigError(
            f"RGT metadata sets qk_scale={shown(meta['qk_scale'])}; only the default scale is supported."
        )
    img_range = meta_img_range(meta)
    inferred: dict[str, str] = {}
    embed_dim, in_chans = sd["conv_first.weight"].shape[:2]
    depths = tuple(seq_len(sd, f"layers.{i}.blocks") for i in range(seq_len(sd, "layers")))
    hidden = sd["layers.0.blocks.0.mlp.fc1.weight"].shape[0]
    c_ratio = _c_ratio(sd, depths, embed_dim, meta, inferred)
    resi_connection = residual_conv_kind(sd, "conv_after_body")
    if resi_connection is None:
        raise ConfigError(
            "RGT weights have neither conv_after_body.weight (1conv) nor conv_after_body.0.weight (3conv)."
        )
    config = RGTConfig(
        scale=pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1,
        in_chans=int(in_chans),
        embed_dim=int(embed_dim),
        depths=depths,
        num_heads=_num_heads(sd, len(depths), embed_dim, c_ratio, meta, inferred),
        mlp_ratio=exact_ratio(hidden, embed_dim),
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in sd,
        split_size=_split_size(sd, meta, inferred),
        c_ratio=c_ratio,
        img_range=1.0 if img_range is None else img_range,
        resi_connection=resi_connection,
    )
    if img_range is None:
        inferred["img_range"] = "1.0 assumed (not stored in weights)"
    return config, inferred


def _c_ratio(sd: StateDict, depth: tuple[int, ...], dim: int, meta: Mapping, inferred: dict) -> float:
    """RG-SA channel ratio from the first RG-SA conv (metadata wins when it agrees)."""
    wanted = meta_float(meta, "c_ratio", min=0.0, max=1.0, min_inclusive=False)
    group = next((i for i, d in enumerate(depth) if d >= 2), None)
    if group is None:
        inferred["c_ratio"] = "0.5 assumed (no RG-SA block in the weights, so unused)"
        return 0.5 if wanted is None else wanted
    reduced = sd[f"layers.{group}.blocks.1.attn.conv.weight"].shape[0]
    if wanted is not None and int(dim * wanted) == reduced:
        return float(wanted)
    return exact_ratio(reduced, dim)


def _num_heads(
    sd: StateDict, groups: int, dim: int, c_ratio: float, meta: Mapping, inferred: dict
) -> tuple[int, ...]:
    """Heads per group: each L-SA branch has ``heads // 2``, so an odd count is a guess."""
    heads = []
    wanted = meta_int_list(meta, "num_heads", max=dim, default=())
    if wanted and len(wanted) != groups:
        raise bad_value("num_heads", meta["num_heads"], f"a list of {groups} head counts (one per group)")
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
    return tuple(heads)


def _split_size(sd: StateDict, meta: Mapping, inferred: dict) -> tuple[int, int]:
    """Window ``(height, width)`` of the first L-SA branch."""
    table_key = "layers.0.blocks.0.attn.attns.0.rpe_biases"
    index_key = "layers.0.blocks.0.attn.attns.0.relative_position_index"
    sides = None
    if table_key in sd and index_key in sd:
        sides = _window_sides(sd[index_key].shape[0], sd[table_key].shape[0])
    wanted = meta_int_list(meta, "split_size", length=2, max=MAX_SPLIT)
    if wanted is not None and (sides is None or sorted(wanted) == sorted(sides)):
        return wanted
    if sides is None:
        inferred["split_size"] = f"{list(OFFICIAL_SPLIT)} assumed (official; no window tables saved)"
        return OFFICIAL_SPLIT
    small, large = sorted(sides)
    if small == large:
        return small, large
    read = _order_from_mask(sd, small, large)
    if read is not None:
        return read
    inferred["split_size"] = f"[{small}, {large}] assumed (the order is not stored without a shift mask)"
    return small, large


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


def _order_from_mask(sd: StateDict, small: int, large: int) -> tuple[int, int] | None:
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
            return wh, ww
    return None
