"""SwinIR's config: the frozen :class:`SwinIRConfig` and reading it from a state dict.

Official (``JingyunLiang/SwinIR``) BasicSR checkpoints of every task, spandrel/traiNNer-redux/neosr
files and DiffBIR's stage-1 restorer (a SwinIR that pixel-unshuffles its input) share one key
layout. Everything but ``img_range`` is read from tensor shapes; traiNNer-redux metadata settles
``img_range`` (and whether windows shift, for models trained on one window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..common.config import ModelConfig, exact_ratio
from ..common.metadata import given, meta_bool, meta_choice, meta_img_range, meta_int, shown
from ..common.residual import residual_conv_kind
from ..common.state import seq_len
from ..common.swin_config import read_shift, window_from_table
from ..common.upsample import pixelshuffle_scale
from ..errors import ConfigError
from .keys import BLOCK0, conv_first_prefix

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
# The JPEG artifact-removal releases are the only ones with 7 px windows, and they take inputs in
# [0, 255] (img_range 255); every other release uses 1. spandrel infers it the same way.
JPEG_WINDOW = 7
# Official release widths: (embed_dim, groups, heads) -> size name.
SIZES = {(60, 4, 6): "SwinIR-S", (180, 6, 6): "SwinIR-M", (240, 9, 8): "SwinIR-L"}


@dataclass(frozen=True, kw_only=True)
class SwinIRConfig(ModelConfig):
    """SwinIR hyperparameters (shared fields: :class:`~..common.config.ModelConfig`).

    ``scale`` is the factor from input to output; a model that pixel-unshuffles its input by
    ``unshuffle`` upsamples its features by ``scale * unshuffle`` (DiffBIR: 8 and 8, scale 1).

    Args:
        depths: Swin layers per residual group (RSTB).
        window_size: attention window side.
        qkv_bias: whether qkv projections have biases.
        patch_norm: whether tokens are layer-normed after the first conv.
        img_range: input multiplier after mean subtraction (255 for the JPEG models).
        upsampler: ``pixelshuffle`` (classical SR), ``pixelshuffledirect`` (lightweight),
            ``nearest+conv`` (real-world SR) or ``""`` (denoising / JPEG: same size, residual).
        resi_connection: ``1conv`` or ``3conv``, the conv closing each group and the body.
        num_feat: channels of the reconstruction (64 in every release).
        shift: whether odd layers shift windows (False only for a training size <= the window).
        unshuffle: pixel-unshuffle factor applied to the input before ``conv_first`` (1: none).
        unshuffle_in_conv_first: ``conv_first`` is ``Sequential(PixelUnshuffle, Conv2d)`` (DiffBIR's
            keys ``conv_first.1.*``) rather than a plain conv after the unshuffle.
    """

    embed_dim: int = 180
    depths: tuple[int, ...] = (6,) * 6
    window_size: int = 8
    qkv_bias: bool = True
    patch_norm: bool = True
    img_range: float = 1.0
    upsampler: str = "pixelshuffle"
    resi_connection: str = "1conv"
    num_feat: int = 64
    shift: bool = True
    unshuffle: int = 1
    unshuffle_in_conv_first: bool = False

    def __post_init__(self) -> None:
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, not {self.upsampler!r}")
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"{len(self.depths)} depths but {len(self.num_heads)} head counts")
        if self.upsampler == "" and (self.scale != 1 or self.unshuffle != 1):
            raise ValueError("a model without upsampler restores at the input size (scale 1, no unshuffle)")

    @property
    def upscale(self) -> int:
        """Upsampling factor of the reconstruction (features are ``unshuffle`` times smaller)."""
        return self.scale * self.unshuffle

    @property
    def variant(self) -> str:
        size = SIZES.get((self.embed_dim, self.num_groups, self.num_heads[0]))
        official = (
            size is not None
            and set(self.depths) == {6}
            and set(self.num_heads) == {self.num_heads[0]}
            and self.mlp_ratio == 2.0
            and self.window_size in (8, JPEG_WINDOW)
            and self.unshuffle == 1
        )
        if not official:
            return "SwinIR (custom)"
        if self.upsampler == "nearest+conv":
            return f"{size} real-world"
        if self.upsampler == "":
            return f"{size} {'JPEG' if self.window_size == JPEG_WINDOW else 'denoising'}"
        return size

    @property
    def notes(self) -> list[str]:
        notes = []
        if self.unshuffle > 1:
            notes.append(f"pixel-unshuffles its input by {self.unshuffle} (DiffBIR-style restorer)")
        if not self.shift:
            notes.append("trained on inputs no larger than one window: no shifted windows")
        return notes


def _reconstruction(sd: Mapping, in_chans: int) -> tuple[str, int]:
    """Upsampler kind and its upsampling factor from the reconstruction keys."""
    if "conv_up1.weight" in sd:
        return "nearest+conv", 2 ** sum(f"conv_up{i}.weight" in sd for i in range(1, 4))
    if "conv_before_upsample.0.weight" in sd:
        # x1: conv_before_upsample straight into conv_last, no upsample.N conv (as spandrel reads it)
        return "pixelshuffle", pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1
    if "upsample.0.weight" in sd:
        factor = math.isqrt(int(sd["upsample.0.weight"].shape[0]) // in_chans)
        return "pixelshuffledirect", factor
    if "conv_last.weight" not in sd:
        raise ConfigError(
            "this SwinIR checkpoint has no reconstruction (conv_last, upsample or conv_up1 weights): "
            "it is incomplete. Use the generator's full state dict."
        )
    return "", 1


def _channels(sd: Mapping, first: str) -> tuple[int, int, int]:
    """``(embed_dim, in_chans, unshuffle)`` from the first conv and the output conv."""
    conv_first = sd[f"{first}.weight"]
    embed_dim, conv_in = int(conv_first.shape[0]), int(conv_first.shape[1])
    # the image channels: the output conv writes them (the model outputs what it reads)
    in_chans = int(sd["conv_last.weight"].shape[0]) if "conv_last.weight" in sd else conv_in
    unshuffle = math.isqrt(conv_in // in_chans) if conv_in % in_chans == 0 else 0
    if unshuffle < 1 or unshuffle * unshuffle * in_chans != conv_in:
        raise ConfigError(
            f"conv_first reads {conv_in} channels and conv_last writes {in_chans}: not an image "
            "pixel-unshuffled by a whole factor. The checkpoint is not a SwinIR model or is damaged."
        )
    return embed_dim, in_chans, unshuffle


def _shift_mask_key(depths: tuple[int, ...]) -> str | None:
    """Where the first shifted (odd) block saves its shift mask; None where no group has one."""
    group = next((i for i, d in enumerate(depths) if d >= 2), None)
    return None if group is None else f"layers.{group}.residual_group.blocks.1.attn_mask"


def read_config(sd: Mapping, metadata: Mapping | None = None) -> tuple[SwinIRConfig, dict[str, str]]:
    """The :class:`SwinIRConfig` of a state dict (plus traiNNer-redux ``metadata``) and what was inferred."""
    meta = metadata or {}
    inferred: dict[str, str] = {}
    if "absolute_pos_embed" in sd or meta_bool(meta, "ape", default=False):
        raise ConfigError(
            "this SwinIR checkpoint uses an absolute position embedding (ape=True), which ties it to "
            "its training size; no released SwinIR uses it and it is not supported."
        )
    if given(meta, "qk_scale"):
        raise ConfigError(
            f"SwinIR metadata sets qk_scale={shown(meta['qk_scale'])}; only the default scale is supported."
        )
    first = conv_first_prefix(sd)
    embed_dim, in_chans, unshuffle = _channels(sd, first)
    upsampler, upscale = _reconstruction(sd, in_chans)
    if upscale % unshuffle:
        raise ConfigError(
            f"the input is pixel-unshuffled by {unshuffle} but the reconstruction upsamples by "
            f"{upscale}: the output would not be a whole multiple of the input."
        )
    groups = seq_len(sd, "layers")
    depths = tuple(seq_len(sd, f"layers.{i}.residual_group.blocks") for i in range(groups))
    tables = [
        sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"] for i in range(groups)
    ]
    window = window_from_table(int(tables[0].shape[0]), "SwinIR")
    meta_window = meta_int(meta, "window_size", min=1, max=256)
    if meta_window is not None and meta_window != window:
        raise ConfigError(
            f"training metadata sets window_size={meta_window}, but the weights' position tables are "
            f"for {window} px windows. The metadata does not belong to these weights: remove it."
        )
    meta_choice(meta, "upsampler", (upsampler,))
    meta_unshuffle = meta_int(meta, "start_unshuffle", min=1, max=16, default=unshuffle)
    if meta_unshuffle != unshuffle:
        raise ConfigError(
            f"training metadata sets start_unshuffle={meta_unshuffle}, but the weights "
            f"unshuffle by {unshuffle}. The metadata does not belong to these weights: remove it."
        )
    index_key = BLOCK0 + "attn.relative_position_index"
    shift = read_shift(sd, meta, window, _shift_mask_key(depths), index_key, inferred)
    img_range = meta_img_range(meta)
    if img_range is None:
        jpeg = window == JPEG_WINDOW
        img_range = 255.0 if jpeg else 1.0
        inferred["img_range"] = f"{img_range:g}: not stored in the weights; the official value for " + (
            "the JPEG models (7 px windows)" if jpeg else "every release but the JPEG models"
        )
    config = SwinIRConfig(
        scale=upscale // unshuffle,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=tuple(int(t.shape[1]) for t in tables),
        mlp_ratio=exact_ratio(int(sd[BLOCK0 + "mlp.fc1.weight"].shape[0]), embed_dim),
        window_size=window,
        qkv_bias=BLOCK0 + "attn.qkv.bias" in sd,
        patch_norm="patch_embed.norm.weight" in sd,
        img_range=img_range,
        upsampler=upsampler,
        resi_connection=residual_conv_kind(sd, "conv_after_body") or "1conv",
        num_feat=int(sd["conv_before_upsample.0.weight"].shape[0])
        if "conv_before_upsample.0.weight" in sd
        else 64,
        shift=shift,
        unshuffle=unshuffle,
        unshuffle_in_conv_first=first == "conv_first.1",
    )
    _check_metadata_scale(meta, config)
    return config, inferred


def _check_metadata_scale(meta: Mapping, config: SwinIRConfig) -> None:
    """traiNNer-redux writes the network's ``upscale`` (or ``scale``): it must agree with the weights."""
    for key in ("upscale", "scale"):
        value = meta_int(meta, key, min=1, max=16)
        if value is not None and value not in (config.scale, config.upscale):
            raise ConfigError(
                f"training metadata sets {key}={value}, but the weights upscale by {config.scale}. "
                "The metadata does not belong to these weights: remove it."
            )
