"""DRCT family: detection from state-dict shapes and the spandrel ``Architecture`` (id "DRCT").

Official (``ming053l/DRCT``) BasicSR checkpoints, Real-DRCT GAN, spandrel/traiNNer-redux/neosr
files and community models (e.g. 4xRealWebPhoto_v4_drct-l) share one key layout. Every
hyperparameter except ``img_range`` is read from tensor shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from spandrel import ImageModelDescriptor, SizeRequirements

from ..common.arch_base import ModelInfo, SRArchitecture
from ..common.state import seq_len
from ..common.upsample import pixelshuffle_scale
from ..errors import ConfigError
from .model import DRCT, DRCTConfig

# Named releases: number of RDGs -> name, for the official width/heads/window/growth settings.
VARIANT_BY_DEPTH = {6: "DRCT", 12: "DRCT-L", 14: "DRCT-XL"}
OFFICIAL_SHAPE = {"embed_dim": 180, "window_size": 16, "mlp_ratio": 2.0, "gc": 32}
OFFICIAL_HEADS = 6


def _variant(c: DRCTConfig) -> str:
    official = all(getattr(c, k) == v for k, v in OFFICIAL_SHAPE.items())
    if official and set(c.num_heads) == {OFFICIAL_HEADS} and c.depth in VARIANT_BY_DEPTH:
        return VARIANT_BY_DEPTH[c.depth]
    return "DRCT (custom)"


def _window_from_table(rows: int) -> int:
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise ConfigError(
            f"relative_position_bias_table has {rows} rows, not (2 * window - 1)^2 for any window: "
            "the checkpoint is not a DRCT model or is damaged."
        )
    return (side + 1) // 2


def _has_shift(sd: Mapping, inferred: dict) -> bool:
    """Official models save a shift mask for every shifted layer unless trained on <= one window."""
    if "layers.0.swin2.attn_mask" in sd:
        return True
    if "layers.0.swin1.attn.relative_position_index" in sd:
        return False  # buffers were saved, the mask was not: no shifted windows
    inferred["shift"] = "no saved buffers; assumed shifted windows as in every official config"
    return True


def read_config(sd: Mapping, metadata: dict | None = None) -> tuple[DRCTConfig, dict]:
    """DRCT hyperparameters from a state dict (plus traiNNer-redux ``metadata``); returns (config, inferred)."""
    meta = metadata or {}
    inferred: dict[str, str] = {}
    if "absolute_pos_embed" in sd:
        raise ConfigError(
            "this DRCT checkpoint uses an absolute position embedding (ape=True), which ties it to "
            "its training size; no released DRCT uses it and it is not supported."
        )
    if "conv_last.weight" not in sd or "conv_before_upsample.0.weight" not in sd:
        raise ConfigError(
            "this DRCT checkpoint has no pixel-shuffle reconstruction (conv_before_upsample / "
            "conv_last); the official model only produces images with upsampler='pixelshuffle'."
        )
    conv_first = sd["conv_first.weight"]
    embed_dim, in_ch = int(conv_first.shape[0]), int(conv_first.shape[1])
    depth = seq_len(sd, "layers")
    table = sd["layers.0.swin1.attn.relative_position_bias_table"]
    window = _window_from_table(int(table.shape[0]))
    heads = tuple(
        int(sd[f"layers.{i}.swin1.attn.relative_position_bias_table"].shape[1]) for i in range(depth)
    )
    mlp_ratio = sd["layers.0.swin1.mlp.fc1.weight"].shape[0] / embed_dim
    gc = int(sd["layers.0.adjust1.weight"].shape[0])
    scale = pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1

    shift = _has_shift(sd, inferred)
    if "img_size" in meta:
        shift = int(meta["img_size"]) > window
        inferred.pop("shift", None)
    img_range = float(meta.get("img_range", 1.0))
    if "img_range" not in meta:
        inferred["img_range"] = "not stored in weights; 1.0 as in every official config"

    config = DRCTConfig(
        in_ch=in_ch,
        embed_dim=embed_dim,
        num_heads=heads,
        window_size=window,
        mlp_ratio=mlp_ratio,
        gc=gc,
        scale=scale,
        img_range=img_range,
        qkv_bias="layers.0.swin1.attn.qkv.bias" in sd,
        patch_norm="patch_embed.norm.weight" in sd,
        resi_connection="1conv" if "conv_after_body.weight" in sd else "identity",
        shift=shift,
    )
    return config, inferred


class DRCTArch(SRArchitecture):
    """DRCT, DRCT-L, DRCT-XL and custom depths/widths, with our own implementation."""

    required_keys = (
        "conv_first.weight",
        "layers.0.swin1.norm1.weight",
        "layers.0.swin1.attn.relative_position_bias_table",
        "layers.0.swin1.attn.qkv.weight",
        "layers.0.swin1.attn.proj.weight",
        "layers.0.swin1.mlp.fc1.weight",
        "layers.0.adjust1.weight",
        "layers.0.swin2.norm1.weight",
        "layers.0.adjust2.weight",
        "layers.0.swin5.mlp.fc2.weight",
        "layers.0.adjust5.weight",
        "norm.weight",
    )

    def __init__(self) -> None:
        super().__init__(id="DRCT", name="DRCT")

    def load_with_config(self, state_dict, config: dict | None) -> ImageModelDescriptor:
        cfg, inferred = read_config(state_dict, config)
        model = DRCT(cfg)
        notes = [] if cfg.shift else ["trained on inputs no larger than one window: no shifted windows"]
        info = ModelInfo(
            family="DRCT",
            variant=_variant(cfg),
            scale=cfg.scale,
            config=cfg.as_dict(),
            inferred=inferred,
            notes=notes,
        )
        return self.describe(
            model,
            state_dict,
            info,
            supports_half=True,
            supports_bfloat16=True,
            in_ch=cfg.in_ch,
            out_ch=cfg.in_ch,
            # any size works (the model pads); whole windows avoid the padding work
            size_requirements=SizeRequirements(multiple_of=cfg.window_size),
        )


__all__ = ["DRCT", "DRCTArch", "DRCTConfig", "read_config"]
