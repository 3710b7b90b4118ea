"""The nhs2828 RGT's config: the frozen :class:`NHS2828Config` and reading it from a state dict.

Every size is read from tensor shapes. Two settings are not in the weights: the RG-SA stride
``s_r`` (4 in upstream's training script) and the forward argument ``h`` (16 at its test time);
traiNNer-style metadata may give them as ``s_r`` / ``h``; pickled training states carry no
config, so they get the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..common.config import ModelConfig, exact_ratio
from ..common.metadata import first_given, meta_int
from ..common.state import seq_len
from ..errors import ConfigError

VARIANT = "RGT (nhs2828 unofficial)"
# Upstream hard-codes the local attention window (height, width) for every block.
WINDOW = (8, 32)
DEFAULT_STRIDE_R = 4  # src/config/RGT.yaml and src/train.py
DEFAULT_RECURSION_SIZE = 16  # src/train.py h_test
# Sanity bounds: every tile is padded to at least h * s_r rows (64 upstream); a stride of 1 never
# reduces (upstream's log(H / h, s_r) divides by zero).
STRIDE_R_RANGE = (2, 16)
RECURSION_SIZE_RANGE = (1, 128)

LSA = "RGs.{}.LSAs.0"
RGSA = "RGs.0.RGSAs.0.rg_sa"


@dataclass(frozen=True, kw_only=True)
class NHS2828Config(ModelConfig):
    """Hyperparameters of the nhs2828 RGT (shared fields: :class:`~..common.config.ModelConfig`;
    upstream names in brackets).

    Args:
        out_chans: output channels (upstream: ``dim_in``).
        depths: (local, recursive) block pairs per residual group (``N1`` groups of ``N2``).
        c_ratio: RG-SA query/key channels over ``embed_dim`` (``cr``).
        pos_dim: hidden width of the dynamic position bias (``C // 16``).
        reduction_kernel: kernel of the RG-SA recursive depth-wise conv (4).
        stride_r: its stride (``s_r``).
        recursion_size: the forward argument ``h`` (16 at upstream test time).
    """

    scale: int = 2
    out_chans: int = 3
    depths: tuple[int, ...] = (6, 6)
    num_heads: tuple[int, ...] = (6, 6)
    c_ratio: float = 0.5
    pos_dim: int = 11
    reduction_kernel: int = 4
    stride_r: int = DEFAULT_STRIDE_R
    recursion_size: int = DEFAULT_RECURSION_SIZE

    @property
    def reduced_dim(self) -> int:
        """RG-SA query/key channels (``int(C * cr)``)."""
        return int(self.embed_dim * self.c_ratio)

    @property
    def variant(self) -> str:
        return VARIANT

    @property
    def notes(self) -> list[str]:
        return [
            f"{len(self.depths)} residual groups of {'/'.join(map(str, self.depths))} block pairs; "
            "any input size (padded internally to H%8=0, H>=64, W%32=0, then cropped)"
        ]


def _depths(sd: Mapping) -> tuple[int, ...]:
    """Block pairs per residual group; each group needs N local, N recursive blocks and 2N skips."""
    depths = []
    for i in range(seq_len(sd, "RGs")):
        local, recursive = seq_len(sd, f"RGs.{i}.LSAs"), seq_len(sd, f"RGs.{i}.RGSAs")
        skips = seq_len(sd, f"RGs.{i}.HAIs")
        if not local or local != recursive or skips != 2 * local:
            raise ConfigError(
                f"residual group RGs.{i} has {local} LSAs, {recursive} RGSAs and {skips} HAIs; an "
                "nhs2828 RGT group needs N, N and 2N. The checkpoint is incomplete: re-export it."
            )
        depths.append(local)
    return tuple(depths)


def _window_check(sd: Mapping) -> None:
    """Saved window buffers, when present, must be for upstream's fixed 8 x 32 window."""
    key = f"{LSA.format(0)}.lsa.rpe_biases"
    wh, ww = WINDOW
    if key in sd and sd[key].shape[0] != (2 * wh - 1) * (2 * ww - 1):
        raise ConfigError(
            f"{key} has {sd[key].shape[0]} entries, not {(2 * wh - 1) * (2 * ww - 1)}: this "
            f"checkpoint was trained with a window other than upstream's fixed {wh}x{ww}, which we "
            "do not support."
        )


def _setting(meta: Mapping, names: tuple[str, ...], bounds: tuple[int, int]) -> int | None:
    """The first of the aliases ``names`` that ``meta`` sets, as an integer within ``bounds``."""
    key = first_given(meta, names)
    return None if key is None else meta_int(meta, key, min=bounds[0], max=bounds[1])


def read_config(sd: Mapping, metadata: Mapping | None = None) -> tuple[NHS2828Config, dict[str, str]]:
    """The :class:`NHS2828Config` of a state dict (plus ``s_r`` / ``h`` from metadata) and what was inferred."""
    meta = metadata or {}
    dim, in_chans = sd["conv1.weight"].shape[:2]
    depths = _depths(sd)
    _window_check(sd)
    pos_layers = seq_len(sd, f"{LSA.format(0)}.lsa.pos_bias.seq")
    heads = tuple(
        sd[f"{LSA.format(i)}.lsa.pos_bias.seq.{pos_layers - 1}.weight"].shape[0] for i in range(len(depths))
    )
    reduced_dim = sd[f"{RGSA}.Q.weight"].shape[0]
    shuffle_ch = sd["reconstruction.conv1.weight"].shape[0]
    scale = math.isqrt(shuffle_ch // dim)
    if scale * scale * dim != shuffle_ch or any(dim % n or reduced_dim % n for n in heads):
        raise ConfigError(
            f"inconsistent shapes: {dim} channels, {heads} heads, {reduced_dim} RG-SA channels, "
            f"{shuffle_ch} channels before the pixel shuffle. This is not a complete nhs2828 RGT "
            "checkpoint."
        )
    inferred: dict[str, str] = {}
    stride_r = _setting(meta, ("s_r", "stride_r"), STRIDE_R_RANGE)
    if stride_r is None:
        stride_r = DEFAULT_STRIDE_R
        inferred["s_r"] = f"{stride_r}, upstream's setting (the stride is not stored in weights)"
    recursion_size = _setting(meta, ("h", "h_test", "recursion_size"), RECURSION_SIZE_RANGE)
    if recursion_size is None:
        recursion_size = DEFAULT_RECURSION_SIZE
        inferred["h"] = f"{recursion_size}, upstream's test-time forward argument"
    config = NHS2828Config(
        scale=scale,
        in_chans=int(in_chans),
        out_chans=int(sd["reconstruction.conv2.weight"].shape[0]),
        embed_dim=int(dim),
        depths=depths,
        num_heads=heads,
        mlp_ratio=exact_ratio(sd[f"{LSA.format(0)}.mlp.seq.0.weight"].shape[0], dim),
        c_ratio=exact_ratio(reduced_dim, dim),
        pos_dim=int(sd[f"{LSA.format(0)}.lsa.pos_bias.seq.0.weight"].shape[0]),
        reduction_kernel=int(sd[f"{RGSA}.DWConv.conv.weight"].shape[-1]),
        stride_r=stride_r,
        recursion_size=recursion_size,
    )
    return config, inferred
