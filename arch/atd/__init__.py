"""ATD and ATD-light: detection from checkpoint weights and model construction."""

from __future__ import annotations

import math

from spandrel import ImageModelDescriptor

from ..common.arch_base import ModelInfo, SRArchitecture
from ..common.state import seq_len
from ..common.upsample import pixelshuffle_scale
from ..errors import ConfigError
from .model import ATD

LAYER0 = "layers.0.residual_group.layers.0."

# Official release configs (LabShuHangGU/Adaptive-Token-Dictionary) that name a variant.
OFFICIAL = {
    "ATD": dict(
        embed_dim=210, depths=[6] * 6, num_heads=[6] * 6, window_size=16, num_tokens=128,
        reducted_dim=20, convffn_kernel_size=5, mlp_ratio=2.0, upsampler="pixelshuffle",
    ),
    "ATD-light": dict(
        embed_dim=48, depths=[6] * 4, num_heads=[4] * 4, window_size=16, num_tokens=64,
        reducted_dim=8, convffn_kernel_size=7, mlp_ratio=1.0, upsampler="pixelshuffledirect",
    ),
}  # fmt: skip
DEFAULT_CATEGORY_SIZE = {"light": 128, "full": 256}


def _mlp_ratio(hidden: int, dim: int) -> float:
    """A ratio that the model turns back into exactly ``hidden`` channels (``int(dim * r)``)."""
    ratio = hidden / dim
    while int(dim * ratio) < hidden:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _upsampler(sd: dict, in_chans: int) -> tuple[str, int]:
    """Upsampler kind and scale from the reconstruction keys."""
    if "conv_up1.weight" in sd:
        return "nearest+conv", 4
    if "conv_before_upsample.0.weight" in sd:
        return "pixelshuffle", pixelshuffle_scale(sd, "upsample")
    if "upsample.0.weight" in sd:
        return "pixelshuffledirect", math.isqrt(sd["upsample.0.weight"].shape[0] // in_chans)
    return "", 1


def config_from_state_dict(sd: dict) -> dict:
    """Every ATD constructor argument that the weights reveal."""
    if "absolute_pos_embed" in sd:
        raise ConfigError(
            "ATD checkpoint with an absolute position embedding (ape=True): it only works at its "
            "training size and is not supported. Use a checkpoint trained without ape."
        )
    in_chans, embed_dim = sd["conv_first.weight"].shape[1], sd["conv_first.weight"].shape[0]
    groups = seq_len(sd, "layers")
    depths = [seq_len(sd, f"layers.{i}.residual_group.layers") for i in range(groups)]
    tables = [
        sd[f"layers.{i}.residual_group.layers.0.attn_win.relative_position_bias_table"] for i in range(groups)
    ]
    upsampler, scale = _upsampler(sd, in_chans)
    return dict(
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=[t.shape[1] for t in tables],
        window_size=(math.isqrt(tables[0].shape[0]) + 1) // 2,
        num_tokens=sd[LAYER0 + "attn_atd.scale"].shape[0],
        reducted_dim=sd[LAYER0 + "attn_atd.wq.weight"].shape[0],
        convffn_kernel_size=sd[LAYER0 + "convffn.dwconv.depthwise_conv.0.weight"].shape[-1],
        mlp_ratio=_mlp_ratio(sd[LAYER0 + "convffn.fc1.weight"].shape[0], embed_dim),
        qkv_bias=LAYER0 + "wqkv.bias" in sd,
        patch_norm="patch_embed.norm.weight" in sd,
        upscale=scale,
        upsampler=upsampler,
        resi_connection="3conv" if "layers.0.conv.0.weight" in sd else "1conv",
        norm="no_norm" not in sd,
    )


def variant_name(cfg: dict) -> str:
    for name, official in OFFICIAL.items():
        if all(cfg[k] == v for k, v in official.items()):
            return name
    return "ATD (custom)"


class ATDArch(SRArchitecture):
    """Adaptive Token Dictionary transformer (ATD, ATD-light, and custom configs)."""

    required_keys = (
        "conv_first.weight",
        "layers.0.residual_group.td",
        LAYER0 + "wqkv.weight",
        LAYER0 + "attn_win.relative_position_bias_table",
        LAYER0 + "attn_atd.wq.weight",
        LAYER0 + "attn_atd.scale",
        LAYER0 + "attn_aca.logit_scale",
        LAYER0 + "convffn.fc1.weight",
        LAYER0 + "convffn.dwconv.depthwise_conv.0.weight",
        "norm.weight",
    )

    def __init__(self) -> None:
        super().__init__(id="ATD", name="ATD")

    def load_with_config(self, state_dict, config: dict | None) -> ImageModelDescriptor:
        config = config or {}
        cfg = config_from_state_dict(state_dict)
        variant = variant_name(cfg)
        inferred: dict[str, str] = {}
        light = cfg["upsampler"] == "pixelshuffledirect" and cfg["embed_dim"] == 48
        if "category_size" in config:
            cfg["category_size"] = int(config["category_size"])
        else:
            cfg["category_size"] = DEFAULT_CATEGORY_SIZE["light" if light else "full"]
            inferred["category_size"] = (
                f"{cfg['category_size']}: not stored in the weights; official default for "
                f"{'ATD-light' if light else 'ATD'}"
            )
        if "img_range" in config:
            cfg["img_range"] = float(config["img_range"])
        else:
            cfg["img_range"] = 1.0
            inferred["img_range"] = "1.0: not stored in the weights; official default"
        notes = [] if cfg["norm"] else ["no RGB-mean normalisation (neosr no_norm checkpoint)"]
        model = ATD(**cfg)
        info = ModelInfo(
            family="ATD", variant=variant, scale=cfg["upscale"], config=cfg, inferred=inferred, notes=notes
        )
        return self.describe(model, state_dict, info, supports_half=True, supports_bfloat16=True)


__all__ = ["ATD", "ATDArch"]
