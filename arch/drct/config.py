"""DRCT's config: the frozen :class:`DRCTConfig` and reading it from a state dict.

Official (``ming053l/DRCT``) BasicSR checkpoints, Real-DRCT GAN, spandrel/traiNNer-redux/neosr
files and community models (e.g. 4xRealWebPhoto_v4_drct-l) share one key layout. Every
hyperparameter except ``img_range`` is read from tensor shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..common.config import ModelConfig
from ..common.metadata import meta_img_range
from ..common.state import seq_len
from ..common.swin_config import read_shift, window_from_table
from ..common.upsample import pixelshuffle_scale
from ..errors import ConfigError

# Named releases: number of RDGs -> name, for the official width/heads/window/growth settings.
VARIANT_BY_GROUPS = {6: "DRCT", 12: "DRCT-L", 14: "DRCT-XL"}


@dataclass(frozen=True, kw_only=True)
class DRCTConfig(ModelConfig):
    """DRCT hyperparameters (shared fields: :class:`~..common.config.ModelConfig`).

    ``num_heads`` are the heads of the first Swin layer of each RDG (one entry per RDG);
    ``mlp_ratio`` is that of the first three layers of an RDG.

    Args:
        window_size: attention window side.
        gc: growth channels of the dense connections.
        img_range: input scaling applied after mean subtraction.
        qkv_bias: whether qkv projections have biases.
        patch_norm: whether tokens are layer-normed after the first conv.
        resi_connection: "1conv" (a 3x3 conv after the body) or "identity".
        shift: whether even layers shift windows (False only for a training size <= the window).
    """

    window_size: int = 16
    gc: int = 32
    img_range: float = 1.0
    qkv_bias: bool = True
    patch_norm: bool = True
    resi_connection: str = "1conv"
    shift: bool = True

    @property
    def variant(self) -> str:
        official = (self.embed_dim, self.window_size, self.mlp_ratio, self.gc) == (180, 16, 2.0, 32)
        if official and set(self.num_heads) == {6} and self.num_groups in VARIANT_BY_GROUPS:
            return VARIANT_BY_GROUPS[self.num_groups]
        return "DRCT (custom)"

    @property
    def notes(self) -> list[str]:
        return [] if self.shift else ["trained on inputs no larger than one window: no shifted windows"]


def read_config(sd: Mapping, metadata: Mapping | None = None) -> tuple[DRCTConfig, dict[str, str]]:
    """The :class:`DRCTConfig` of a state dict (plus traiNNer-redux ``metadata``) and what was inferred."""
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
    embed_dim, in_chans = int(conv_first.shape[0]), int(conv_first.shape[1])
    groups = seq_len(sd, "layers")
    window = window_from_table(int(sd["layers.0.swin1.attn.relative_position_bias_table"].shape[0]), "DRCT")
    heads = tuple(
        int(sd[f"layers.{i}.swin1.attn.relative_position_bias_table"].shape[1]) for i in range(groups)
    )
    mask_key, index_key = "layers.0.swin2.attn_mask", "layers.0.swin1.attn.relative_position_index"
    shift = read_shift(sd, meta, window, mask_key, index_key, inferred)  # even layers shift
    img_range = meta_img_range(meta)
    if img_range is None:
        img_range = 1.0
        inferred["img_range"] = "not stored in weights; 1.0 as in every official config"

    config = DRCTConfig(
        scale=pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1,
        in_chans=in_chans,
        embed_dim=embed_dim,
        num_heads=heads,
        mlp_ratio=sd["layers.0.swin1.mlp.fc1.weight"].shape[0] / embed_dim,
        window_size=window,
        gc=int(sd["layers.0.adjust1.weight"].shape[0]),
        img_range=img_range,
        qkv_bias="layers.0.swin1.attn.qkv.bias" in sd,
        patch_norm="patch_embed.norm.weight" in sd,
        resi_connection="1conv" if "conv_after_body.weight" in sd else "identity",
        shift=shift,
    )
    return config, inferred
