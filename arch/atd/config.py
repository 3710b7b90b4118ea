"""ATD's config: the frozen :class:`ATDConfig` and reading it from a state dict.

Everything but ``category_size`` and ``img_range`` is in the weights; traiNNer-redux metadata
gives those two, otherwise the official defaults are used and recorded in ``inferred``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..common.config import ModelConfig, exact_ratio
from ..common.metadata import meta_img_range, meta_int
from ..common.residual import residual_conv_kind
from ..common.state import seq_len
from ..common.upsample import pixelshuffle_scale
from ..errors import ConfigError

LAYER0 = "layers.0.residual_group.layers.0."
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
# Official release configs (LabShuHangGU/Adaptive-Token-Dictionary) that name a variant.
OFFICIAL = {
    "ATD": dict(
        embed_dim=210, depths=(6,) * 6, num_heads=(6,) * 6, window_size=16, num_tokens=128,
        reducted_dim=20, convffn_kernel_size=5, mlp_ratio=2.0, upsampler="pixelshuffle",
    ),
    "ATD-light": dict(
        embed_dim=48, depths=(6,) * 4, num_heads=(4,) * 4, window_size=16, num_tokens=64,
        reducted_dim=8, convffn_kernel_size=7, mlp_ratio=1.0, upsampler="pixelshuffledirect",
    ),
}  # fmt: skip
DEFAULT_CATEGORY_SIZE = {"ATD-light": 128, "ATD": 256}
MAX_CATEGORY_SIZE = 4096  # 16x the official group: each group's attention is category_size^2


@dataclass(frozen=True, kw_only=True)
class ATDConfig(ModelConfig):
    """ATD hyperparameters (shared fields: :class:`~..common.config.ModelConfig`).

    Args:
        depths: layers per residual group.
        window_size: attention window side (inputs are mirror-padded to a multiple of it).
        category_size: tokens per AC-MSA group (not stored in weights: 256 ATD, 128 ATD-light).
        num_tokens: token-dictionary entries.
        reducted_dim: TDCA query/key channels.
        convffn_kernel_size: depthwise kernel of the ConvFFN.
        qkv_bias: biases on the qkv projections.
        patch_norm: LayerNorm after the patch embedding.
        img_range: input multiplier after mean subtraction.
        upsampler: ``pixelshuffle``, ``pixelshuffledirect``, ``nearest+conv`` (x4) or ``""``.
        resi_connection: ``1conv`` or ``3conv``.
        norm: subtract the RGB mean (False for neosr's ``no_norm`` checkpoints).
    """

    embed_dim: int = 210
    depths: tuple[int, ...] = (6,) * 6
    window_size: int = 16
    category_size: int = 256
    num_tokens: int = 128
    reducted_dim: int = 20
    convffn_kernel_size: int = 5
    qkv_bias: bool = True
    patch_norm: bool = True
    img_range: float = 1.0
    upsampler: str = "pixelshuffle"
    resi_connection: str = "1conv"
    norm: bool = True

    def __post_init__(self) -> None:
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, not {self.upsampler!r}")
        if self.upsampler == "nearest+conv" and self.scale != 4:
            raise ValueError(f"the nearest+conv upsampler is x4 only, not x{self.scale}")

    @property
    def variant(self) -> str:
        for name, official in OFFICIAL.items():
            if all(getattr(self, k) == v for k, v in official.items()):
                return name
        return "ATD (custom)"

    @property
    def notes(self) -> list[str]:
        return [] if self.norm else ["no RGB-mean normalisation (neosr no_norm checkpoint)"]


def _upsampler(sd: Mapping, in_chans: int) -> tuple[str, int]:
    """Upsampler kind and scale from the reconstruction keys."""
    if "conv_up1.weight" in sd:
        return "nearest+conv", 4
    if "conv_before_upsample.0.weight" in sd:
        # x1: conv_before_upsample straight into conv_last, no upsample.N conv (as spandrel reads it)
        return "pixelshuffle", pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1
    if "upsample.0.weight" in sd:
        return "pixelshuffledirect", math.isqrt(sd["upsample.0.weight"].shape[0] // in_chans)
    return "", 1


def read_config(sd: Mapping, metadata: Mapping | None = None) -> tuple[ATDConfig, dict[str, str]]:
    """The :class:`ATDConfig` of a state dict (plus traiNNer-redux ``metadata``) and what was inferred."""
    meta = metadata or {}
    if "absolute_pos_embed" in sd:
        raise ConfigError(
            "ATD checkpoint with an absolute position embedding (ape=True): it only works at its "
            "training size and is not supported. Use a checkpoint trained without ape."
        )
    in_chans, embed_dim = sd["conv_first.weight"].shape[1], sd["conv_first.weight"].shape[0]
    groups = seq_len(sd, "layers")
    tables = [
        sd[f"layers.{i}.residual_group.layers.0.attn_win.relative_position_bias_table"] for i in range(groups)
    ]
    upsampler, scale = _upsampler(sd, in_chans)
    light = upsampler == "pixelshuffledirect" and embed_dim == 48
    default_category = DEFAULT_CATEGORY_SIZE["ATD-light" if light else "ATD"]
    category_size = meta_int(meta, "category_size", min=1, max=MAX_CATEGORY_SIZE)
    img_range = meta_img_range(meta)
    inferred: dict[str, str] = {}
    if category_size is None:
        category_size = default_category
        inferred["category_size"] = (
            f"{default_category}: not stored in the weights; official default for "
            f"{'ATD-light' if light else 'ATD'}"
        )
    if img_range is None:
        img_range = 1.0
        inferred["img_range"] = "1.0: not stored in the weights; official default"
    config = ATDConfig(
        scale=scale,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=tuple(seq_len(sd, f"layers.{i}.residual_group.layers") for i in range(groups)),
        num_heads=tuple(t.shape[1] for t in tables),
        mlp_ratio=exact_ratio(sd[LAYER0 + "convffn.fc1.weight"].shape[0], embed_dim),
        window_size=(math.isqrt(tables[0].shape[0]) + 1) // 2,
        category_size=category_size,
        num_tokens=sd[LAYER0 + "attn_atd.scale"].shape[0],
        reducted_dim=sd[LAYER0 + "attn_atd.wq.weight"].shape[0],
        convffn_kernel_size=sd[LAYER0 + "convffn.dwconv.depthwise_conv.0.weight"].shape[-1],
        qkv_bias=LAYER0 + "wqkv.bias" in sd,
        patch_norm="patch_embed.norm.weight" in sd,
        img_range=img_range,
        upsampler=upsampler,
        resi_connection=residual_conv_kind(sd, "layers.0.conv") or "1conv",
        norm="no_norm" not in sd,
    )
    return config, inferred
