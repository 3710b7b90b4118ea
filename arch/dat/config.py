"""DAT's config: the frozen :class:`DATConfig` and reading it from a state dict.

The weights give everything but ``img_range`` and ``qk_scale`` (training settings) and
``split_size`` when the window tables are not saved (the official files and spandrel's always save
them). traiNNer-redux metadata (the DAT constructor's arguments) settles those; the weights win
where they tell. A malformed metadata value is a :class:`~..errors.ConfigError` naming the key
(``common/metadata.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from ..common.config import ModelConfig, exact_ratio
from ..common.metadata import bad_value, meta_bool, meta_float, meta_img_range, meta_int_list
from ..common.residual import residual_conv_kind
from ..common.state import seq_len
from ..common.upsample import pixelshuffle_scale
from ..errors import ConfigError

StateDict = Mapping[str, Tensor]
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect")
OFFICIAL_SPLIT = (8, 32)
MAX_SPLIT = 256  # window side (official 8 x 32); the attention grows with its area squared
MAX_QK_SCALE = 100.0  # softmax temperature (default head_dim ** -0.5, about 0.18)
_SIX = dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6, resi_connection="1conv")
# Official releases (zhengchen1999/DAT) and DAT-2 (its expansion-2 release, also traiNNer-redux's dat_2).
OFFICIAL = {
    "DAT": dict(_SIX, mlp_ratio=4.0, split_size=(8, 32), upsampler="pixelshuffle"),
    "DAT-S": dict(_SIX, mlp_ratio=2.0, split_size=(8, 16), upsampler="pixelshuffle"),
    "DAT-2": dict(_SIX, mlp_ratio=2.0, split_size=(8, 32), upsampler="pixelshuffle"),
    "DAT-light": dict(
        embed_dim=60, depths=(18,), num_heads=(6,), mlp_ratio=2.0, split_size=(8, 32),
        resi_connection="3conv", upsampler="pixelshuffledirect",
    ),
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DATConfig(ModelConfig):
    """DAT hyperparameters (shared fields: :class:`~..common.config.ModelConfig`; ``mlp_ratio`` is
    the official ``expansion_factor``).

    Args:
        depths: blocks per residual group (alternating spatial and channel attention).
        split_size: ``(height, width)`` of the first spatial branch's windows (the second branch
            uses the transposed shape).
        qkv_bias: whether the qkv projections have biases.
        qk_scale: softmax temperature of the spatial attention (None: ``head_dim ** -0.5``).
        img_range: factor applied to the mean-subtracted input (and undone at the end).
        resi_connection: ``"1conv"`` or ``"3conv"``: the conv closing each group and the body.
        upsampler: ``"pixelshuffle"`` (conv, x2/x3 stages, conv) or ``"pixelshuffledirect"``
            (one conv and one pixel shuffle, the light model's).
    """

    embed_dim: int = 180
    depths: tuple[int, ...] = (6,) * 6
    num_heads: tuple[int, ...] = (6,) * 6
    mlp_ratio: float = 4.0
    split_size: tuple[int, int] = OFFICIAL_SPLIT
    qkv_bias: bool = True
    qk_scale: float | None = None
    img_range: float = 1.0
    resi_connection: str = "1conv"
    upsampler: str = "pixelshuffle"

    def __post_init__(self) -> None:
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, not {self.upsampler!r}")

    @property
    def variant(self) -> str:
        """``DAT`` / ``DAT-S`` / ``DAT-2`` / ``DAT-light`` for the release configs, else ``DAT (custom)``."""
        if self.in_chans == 3 and self.qkv_bias and self.qk_scale is None:
            for name, official in OFFICIAL.items():
                if all(getattr(self, k) == v for k, v in official.items()):
                    return name
        return "DAT (custom)"


def read_config(sd: StateDict, metadata: Mapping | None = None) -> tuple[DATConfig, dict[str, str]]:
    """The :class:`DATConfig` of a state dict and ``{name: why it was inferred}``.

    Args:
        sd: the checkpoint's state dict (official key layout).
        metadata: training hyperparameters (traiNNer-redux: the DAT constructor's arguments), or None.
    """
    meta = metadata or {}
    if meta_bool(meta, "unshuffle_mod", default=False):
        raise ConfigError(
            "DAT metadata sets unshuffle_mod=true (traiNNer-redux's pixel-unshuffled input), but the "
            "weights have a plain conv_first: the metadata does not belong to these weights."
        )
    img_range = meta_img_range(meta)
    inferred: dict[str, str] = {}
    if img_range is None:
        inferred["img_range"] = "1.0 assumed (not stored in weights)"
    embed_dim, in_chans = (int(n) for n in sd["conv_first.weight"].shape[:2])
    depths = tuple(seq_len(sd, f"layers.{i}.blocks") for i in range(seq_len(sd, "layers")))
    upsampler, scale = _upsampler(sd, in_chans)
    resi_connection = residual_conv_kind(sd, "conv_after_body")
    if resi_connection is None:
        raise ConfigError(
            "DAT weights have neither conv_after_body.weight (1conv) nor conv_after_body.0.weight (3conv)."
        )
    config = DATConfig(
        scale=scale,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=_num_heads(sd, depths, embed_dim, meta),
        mlp_ratio=exact_ratio(int(sd["layers.0.blocks.0.ffn.fc1.weight"].shape[0]), embed_dim),
        split_size=_split_size(sd, meta, inferred),
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in sd,
        qk_scale=meta_float(meta, "qk_scale", min=0.0, min_inclusive=False, max=MAX_QK_SCALE),
        img_range=1.0 if img_range is None else img_range,
        resi_connection=resi_connection,
        upsampler=upsampler,
    )
    return config, inferred


def _upsampler(sd: StateDict, in_chans: int) -> tuple[str, int]:
    """Upsampler kind and scale from the reconstruction keys."""
    if "conv_last.weight" in sd:
        return "pixelshuffle", pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1
    if "upsample.0.weight" in sd:
        return "pixelshuffledirect", math.isqrt(sd["upsample.0.weight"].shape[0] // in_chans)
    raise ConfigError("DAT weights have neither conv_last.weight (pixelshuffle) nor upsample.0.weight.")


def _num_heads(sd: StateDict, depths: tuple[int, ...], dim: int, meta: Mapping) -> tuple[int, ...]:
    """Heads per group: the channel attention's temperature has one entry per head. A group of one
    block has only spatial attention, whose branches hold ``heads // 2`` each: an odd count there
    (from metadata) builds the same model as the even one below it."""
    wanted = meta_int_list(meta, "num_heads", max=dim, default=())
    if wanted and len(wanted) != len(depths):
        raise bad_value(
            "num_heads", meta["num_heads"], f"a list of {len(depths)} head counts (one per group)"
        )
    heads = []
    for i, depth in enumerate(depths):
        if depth >= 2:
            heads.append(int(sd[f"layers.{i}.blocks.1.attn.temperature"].shape[0]))
            continue
        half = int(sd[f"layers.{i}.blocks.0.attn.attns.0.pos.pos3.2.weight"].shape[0])
        heads.append(wanted[i] if wanted and wanted[i] // 2 == half else 2 * half)
    return tuple(heads)


def _split_size(sd: StateDict, meta: Mapping, inferred: dict) -> tuple[int, int]:
    """Window ``(height, width)`` of the first spatial branch: its saved offset table ends at
    ``(height - 1, width - 1)``; without it, the metadata's or the official one."""
    wanted = meta_int_list(meta, "split_size", length=2, min=1, max=MAX_SPLIT)
    table = sd.get("layers.0.blocks.0.attn.attns.0.rpe_biases")
    if table is not None and table.dim() == 2 and table.shape[-1] == 2 and len(table):
        last = [int(v) + 1 for v in table[-1].tolist()]
        if (2 * last[0] - 1) * (2 * last[1] - 1) == len(table):
            return last[0], last[1]
    if wanted is not None:
        return wanted[0], wanted[1]
    inferred["split_size"] = f"{list(OFFICIAL_SPLIT)} assumed (official; no window tables saved)"
    return OFFICIAL_SPLIT
