"""HAT's config: the frozen :class:`HATConfig` and reading it from a state dict.

Official (``XPixelGroup/HAT``) BasicSR checkpoints (HAT-S, HAT, HAT-L, Real_HAT_GAN), spandrel,
traiNNer-redux (``hat_s`` / ``hat_m`` / ``hat_l``) and neosr files share one key layout. Shapes give
everything but ``conv_scale``, ``img_range``, ``qk_scale`` and the training size (which decides
whether blocks shift their windows); traiNNer-redux metadata settles those, otherwise the official
values are used and recorded in ``inferred``. Metadata that contradicts the weights is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..common.config import ModelConfig, exact_ratio
from ..common.metadata import bad_value, meta_bool, meta_choice, meta_float, meta_img_range, meta_int
from ..common.state import seq_len
from ..common.upsample import pixelshuffle_scale
from ..errors import ConfigError, UnrunnableConfigError

GROUP0 = "layers.0.residual_group."
BLOCK0 = GROUP0 + "blocks.0."
MAX_IMG_SIZE = 65536  # training patch side (64 in every official config)
DEFAULT_IMG_SIZE = 64
# Official releases (options/test/*.yml): what names a variant besides its depth.
_OFFICIAL = {
    "HAT-S": dict(embed_dim=144, compress_ratio=24, squeeze_factor=24, groups=6),
    "HAT": dict(embed_dim=180, compress_ratio=3, squeeze_factor=30, groups=6),
    "HAT-L": dict(embed_dim=180, compress_ratio=3, squeeze_factor=30, groups=12),
}
# Overlap ratios tried first when reading one back from a window size (the official one is 0.5).
_NICE_RATIOS = (0.5, 0.25, 0.75, 0.0, 1.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True, kw_only=True)
class HATConfig(ModelConfig):
    """HAT hyperparameters (shared fields: :class:`~..common.config.ModelConfig`).

    Args:
        depths: hybrid attention blocks (HABs) per residual group (RHAG).
        window_size: side of the self-attention windows (inputs are mirror-padded to a multiple).
        overlap_ratio: the overlapping cross-attention (OCAB) reads keys from windows widened by
            ``int(window_size * overlap_ratio)`` pixels.
        compress_ratio: the HAB's conv branch narrows to ``embed_dim // compress_ratio`` channels.
        squeeze_factor: its channel attention squeezes to ``embed_dim // squeeze_factor``.
        conv_scale: weight of the conv branch in each HAB (not stored in weights).
        img_range: input multiplier after mean subtraction.
        qkv_bias: whether qkv projections have biases.
        qk_scale: attention temperature overriding ``head_dim ** -0.5`` (None: the default).
        patch_norm: whether tokens are layer-normed after the first conv.
        ape: whether an absolute position embedding is added (ties the model to ``img_size``).
        img_size: training input side in tokens. Decides the shifted windows (only when larger
            than the window) and, with ``ape``, the one input size the model accepts.
        resi_connection: ``"1conv"`` (a 3x3 conv closing each group and the body) or ``"identity"``.
        num_feat: channels of the pixel-shuffle reconstruction.
    """

    embed_dim: int = 180
    depths: tuple[int, ...] = (6,) * 6
    window_size: int = 16
    overlap_ratio: float = 0.5
    compress_ratio: float = 3
    squeeze_factor: float = 30
    conv_scale: float = 0.01
    img_range: float = 1.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    patch_norm: bool = True
    ape: bool = False
    img_size: int = DEFAULT_IMG_SIZE
    resi_connection: str = "1conv"
    num_feat: int = 64

    @property
    def overlap_window(self) -> int:
        """Side of the OCAB key windows (the official ``int(ws * ratio) + ws``)."""
        return self.window_size + int(self.window_size * self.overlap_ratio)

    @property
    def conv_channels(self) -> int:
        """Hidden channels of the HAB conv branch."""
        return int(self.embed_dim // self.compress_ratio)

    @property
    def squeeze_channels(self) -> int:
        """Hidden channels of the channel attention."""
        return int(self.embed_dim // self.squeeze_factor)

    @property
    def shift(self) -> bool:
        """Whether odd blocks shift their windows (the official code does not when trained on
        inputs no larger than one window)."""
        return self.img_size > self.window_size

    @property
    def variant(self) -> str:
        common = (
            (self.in_chans, self.window_size, self.overlap_ratio, self.mlp_ratio, self.num_feat)
            == (3, 16, 0.5, 2.0, 64)
            and set(self.depths) == {6}
            and set(self.num_heads) == {6}
            and (self.resi_connection, self.qkv_bias, self.patch_norm, self.ape)
            == ("1conv", True, True, False)
        )
        for name, spec in _OFFICIAL.items():
            mine = dict(
                embed_dim=self.embed_dim,
                compress_ratio=self.compress_ratio,
                squeeze_factor=self.squeeze_factor,
                groups=self.num_groups,
            )
            if common and mine == spec:
                return name
        return "HAT (custom)"

    @property
    def notes(self) -> list[str]:
        notes = []
        if not self.shift:
            notes.append("trained on inputs no larger than one window: no shifted windows")
        if self.ape:
            notes.append(f"absolute position embedding: inputs must be {self.img_size}x{self.img_size}")
        return notes


def _square_side(rows: int, what: str) -> int:
    side = math.isqrt(rows)
    if side * side != rows:
        raise ConfigError(
            f"{what} has {rows} rows, not a square number: the checkpoint is not a HAT model or is damaged."
        )
    return side


def ratio_for_width(dim: int, width: int) -> float:
    """A divisor ``r`` with ``int(dim // r) == width`` (an integer where one exists), as HAT derives
    its conv-branch and channel-attention widths from ratios."""
    if dim % width == 0:
        return dim // width  # the official configs: 180 // 3, 144 // 24, 180 // 30, 144 // 24
    for r in range(dim // width, dim // (width + 1), -1):
        if dim // r == width:
            return r
    r = dim / width
    while int(dim // r) < width:
        r = math.nextafter(r, 0.0)
    return r


def overlap_ratio_for(window: int, overlap: int) -> float:
    """An overlap ratio ``r`` with ``int(window * r) == overlap`` (a round one where possible)."""
    for r in _NICE_RATIOS:
        if int(window * r) == overlap:
            return r
    r = overlap / window
    while int(window * r) < overlap:
        r = math.nextafter(r, math.inf)
    return r


def _agreeing(meta: Mapping, key: str, value, read, expected: str):
    """``value`` (a metadata number) when ``read(value)`` matches the weights, else ConfigError."""
    if value is None:
        return None
    if not read(value):
        raise bad_value(key, meta[key], expected)
    return value


def _windows(sd: Mapping, meta: Mapping) -> tuple[int, float]:
    """Window side (from the HAB bias table) and overlap ratio (from the OCAB table)."""
    hab = _square_side(sd[BLOCK0 + "attn.relative_position_bias_table"].shape[0], "the HAB bias table")
    ocab = _square_side(sd[GROUP0 + "overlap_attn.relative_position_bias_table"].shape[0], "the OCAB table")
    ws = (hab + 1) // 2
    overlap = ocab + 1 - 2 * ws  # the OCAB table covers ws + (ws + overlap) - 1 offsets per axis
    if hab % 2 == 0 or overlap < 0:
        raise ConfigError(
            f"HAT bias tables of {hab}x{hab} and {ocab}x{ocab} offsets fit no window and overlap: "
            "the checkpoint is damaged."
        )
    window = meta_int(meta, "window_size", max=1024)
    _agreeing(meta, "window_size", window, lambda v: v == ws, f"{ws} (the weights')")
    ratio = meta_float(meta, "overlap_ratio", min=0.0, max=16.0)
    expected = f"a ratio giving {overlap} overlap pixels on the weights' {ws}-window"
    ratio = _agreeing(meta, "overlap_ratio", ratio, lambda v: int(ws * v) == overlap, expected)
    return ws, ratio if ratio is not None else overlap_ratio_for(ws, overlap)


def _ratio(sd: Mapping, meta: Mapping, key: str, weight: str, dim: int) -> float:
    """``compress_ratio`` / ``squeeze_factor`` from a hidden width (metadata wins when it agrees)."""
    width = int(sd[weight].shape[0])
    given = meta_float(meta, key, min=0.0, min_inclusive=False, max=float(dim))
    given = _agreeing(
        meta, key, given, lambda v: int(dim // v) == width, f"a divisor giving {width} channels"
    )
    if given is not None:
        return int(given) if float(given).is_integer() else given
    return ratio_for_width(dim, width)


def _img_size(sd: Mapping, meta: Mapping, window: int) -> tuple[bool, int]:
    """Whether the absolute position embedding is present, and the training size in tokens."""
    patch = meta_int(meta, "patch_size", max=MAX_IMG_SIZE, default=1)
    size = meta_int(meta, "img_size", max=MAX_IMG_SIZE)
    tokens = None if size is None else size // patch
    ape = "absolute_pos_embed" in sd
    meta_ape = meta_bool(meta, "ape")
    if meta_ape is not None and meta_ape != ape:
        held = "have" if ape else "lack"
        raise bad_value("ape", meta["ape"], f"{ape} (the weights {held} absolute_pos_embed)")
    if ape:
        side = _square_side(sd["absolute_pos_embed"].shape[1], "absolute_pos_embed")
        if tokens is not None and tokens != side:
            raise bad_value(
                "img_size", meta["img_size"], f"{side * patch} (the embedding covers {side}x{side})"
            )
        tokens = side
    if tokens is not None and tokens < window:
        key = "img_size" if size is not None else "absolute_pos_embed"
        raise ConfigError(
            f"{key} gives a training size of {tokens} tokens, smaller than the {window}-window; the "
            "official HAT cannot run such a model (its windows would shrink below the bias tables)."
        )
    return ape, DEFAULT_IMG_SIZE if tokens is None else tokens


def read_config(sd: Mapping, metadata: Mapping | None = None) -> tuple[HATConfig, dict[str, str]]:
    """The :class:`HATConfig` of a state dict (plus traiNNer-redux ``metadata``) and what was inferred."""
    meta = metadata or {}
    inferred: dict[str, str] = {}
    if "conv_last.weight" not in sd or "conv_before_upsample.0.weight" not in sd:
        raise ConfigError(
            "this HAT checkpoint has no pixel-shuffle reconstruction (conv_before_upsample / conv_last); "
            "the official model only produces images with upsampler='pixelshuffle'."
        )
    meta_choice(meta, "upsampler", ("pixelshuffle",))
    embed_dim, in_chans = (int(n) for n in sd["conv_first.weight"].shape[:2])
    groups = seq_len(sd, "layers")
    depths = tuple(seq_len(sd, f"layers.{i}.residual_group.blocks") for i in range(groups))
    heads = tuple(
        int(sd[f"layers.{i}.residual_group.overlap_attn.relative_position_bias_table"].shape[1])
        for i in range(groups)
    )
    if any(embed_dim % h for h in heads):
        raise UnrunnableConfigError(
            f"HAT heads {heads} do not divide the {embed_dim} channels, so attention has no head width: "
            "the official HAT cannot run such a model either (nor train it). The checkpoint is damaged "
            "or was saved from an untrained model; use a released HAT checkpoint."
        )
    hidden = int(sd[BLOCK0 + "mlp.fc1.weight"].shape[0])
    if int(sd[GROUP0 + "overlap_attn.mlp.fc1.weight"].shape[0]) != hidden:
        raise ConfigError("HAT's HAB and OCAB MLPs have different widths: the checkpoint is damaged.")
    window, overlap_ratio = _windows(sd, meta)
    ape, img_size = _img_size(sd, meta, window)
    scale = pixelshuffle_scale(sd, "upsample") if "upsample.0.weight" in sd else 1
    upscale = meta_int(meta, "upscale", max=64)
    _agreeing(meta, "upscale", upscale, lambda v: v == scale, f"{scale} (the weights')")

    conv_scale = meta_float(meta, "conv_scale", min=-1e6, max=1e6)
    if conv_scale is None:
        conv_scale = 0.01
        inferred["conv_scale"] = "not stored in weights; 0.01 as in every official config"
    img_range = meta_img_range(meta)  # the reader (and bounds) every family shares
    if img_range is None:
        img_range = 1.0
        inferred["img_range"] = "not stored in weights; 1.0 as in every official config"
    resi = meta_choice(meta, "resi_connection", ("1conv", "identity"))
    read_resi = "1conv" if "conv_after_body.weight" in sd else "identity"
    if resi is not None and resi != read_resi:
        raise bad_value("resi_connection", resi, f"{read_resi!r} (what the weights hold)")

    config = HATConfig(
        scale=scale,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=heads,
        mlp_ratio=exact_ratio(hidden, embed_dim),
        window_size=window,
        overlap_ratio=overlap_ratio,
        compress_ratio=_ratio(sd, meta, "compress_ratio", BLOCK0 + "conv_block.cab.0.weight", embed_dim),
        squeeze_factor=_ratio(
            sd, meta, "squeeze_factor", BLOCK0 + "conv_block.cab.3.attention.1.weight", embed_dim
        ),
        conv_scale=conv_scale,
        img_range=img_range,
        qkv_bias=BLOCK0 + "attn.qkv.bias" in sd,
        qk_scale=meta_float(meta, "qk_scale", min=0.0, min_inclusive=False, max=1e6),
        patch_norm="patch_embed.norm.weight" in sd,
        ape=ape,
        img_size=img_size,
        resi_connection=read_resi,
        num_feat=int(sd["conv_last.weight"].shape[1]),
    )
    return config, inferred
