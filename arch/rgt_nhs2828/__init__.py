"""Detector and loader for the nhs2828 unofficial RGT (its own key layout: ``conv1``, ``RGs.N.*``).

Every size is read from tensor shapes. Two settings are not in the weights: the RG-SA stride
``s_r`` (4 in upstream's training script) and the forward argument ``h`` (16 at its test time);
a config dict (traiNNer-style ``.safetensors`` metadata) may give them as ``s_r`` / ``h``; pickled
training states carry no config, so they get the defaults.
"""

from __future__ import annotations

import math

from ..common.arch_base import ModelInfo, SRArchitecture
from ..common.state import seq_len
from ..errors import ConfigError
from .blocks import WINDOW
from .model import NHS2828RGT

VARIANT = "RGT (nhs2828 unofficial)"
DEFAULT_STRIDE_R = 4  # src/config/RGT.yaml and src/train.py
DEFAULT_RECURSION_SIZE = 16  # src/train.py h_test

LSA = "RGs.0.LSAs.0"
RGSA = "RGs.0.RGSAs.0.rg_sa"


def _shape(state_dict: dict, key: str) -> tuple[int, ...]:
    return tuple(state_dict[key].shape)


def _depths(state_dict: dict) -> list[int]:
    """Block pairs per residual group; each group needs N local, N recursive blocks and 2N skips."""
    depths = []
    for i in range(seq_len(state_dict, "RGs")):
        local, recursive = seq_len(state_dict, f"RGs.{i}.LSAs"), seq_len(state_dict, f"RGs.{i}.RGSAs")
        skips = seq_len(state_dict, f"RGs.{i}.HAIs")
        if not local or local != recursive or skips != 2 * local:
            raise ConfigError(
                f"residual group RGs.{i} has {local} LSAs, {recursive} RGSAs and {skips} HAIs; an "
                "nhs2828 RGT group needs N, N and 2N. The checkpoint is incomplete: re-export it."
            )
        depths.append(local)
    return depths


def _window_check(state_dict: dict) -> None:
    """Saved window buffers, when present, must be for upstream's fixed 8 x 32 window."""
    key = f"{LSA}.lsa.rpe_biases"
    wh, ww = WINDOW
    if key in state_dict and _shape(state_dict, key)[0] != (2 * wh - 1) * (2 * ww - 1):
        raise ConfigError(
            f"{key} has {_shape(state_dict, key)[0]} entries, not {(2 * wh - 1) * (2 * ww - 1)}: this "
            f"checkpoint was trained with a window other than upstream's fixed {wh}x{ww}, which we "
            "do not support."
        )


def _setting(config: dict, names: tuple[str, ...]) -> int | None:
    for name in names:
        if config.get(name) is not None:
            return int(config[name])
    return None


class NHS2828RGTArch(SRArchitecture):
    required_keys = (
        "conv1.weight",
        "RGs.0.HAIs.0.alpha",
        f"{LSA}.lsa.QKV.weight",
        f"{LSA}.lsa.pos_bias.seq.0.weight",
        f"{LSA}.mlp.seq.0.weight",
        f"{RGSA}.Q.weight",
        f"{RGSA}.DWConv.conv.weight",
        "RGs.0.final_conv.weight",
        "conv2.weight",
        "reconstruction.conv1.weight",
        "reconstruction.conv2.weight",
    )

    def __init__(self) -> None:
        super().__init__(id="RGT_nhs2828", name=VARIANT)

    def load_with_config(self, state_dict, config: dict | None):
        config = config or {}
        dim, in_ch = _shape(state_dict, "conv1.weight")[:2]
        depths = _depths(state_dict)
        _window_check(state_dict)
        pos_layers = seq_len(state_dict, f"{LSA}.lsa.pos_bias.seq")
        num_heads = _shape(state_dict, f"{LSA}.lsa.pos_bias.seq.{pos_layers - 1}.weight")[0]
        pos_dim = _shape(state_dict, f"{LSA}.lsa.pos_bias.seq.0.weight")[0]
        reduced_dim = _shape(state_dict, f"{RGSA}.Q.weight")[0]
        shuffle_ch = _shape(state_dict, "reconstruction.conv1.weight")[0]
        scale = math.isqrt(shuffle_ch // dim)
        if scale * scale * dim != shuffle_ch or dim % num_heads or reduced_dim % num_heads:
            raise ConfigError(
                f"inconsistent shapes: {dim} channels, {num_heads} heads, {reduced_dim} RG-SA channels, "
                f"{shuffle_ch} channels before the pixel shuffle. This is not a complete nhs2828 RGT "
                "checkpoint."
            )

        inferred: dict[str, str] = {}
        stride_r = _setting(config, ("s_r", "stride_r"))
        if stride_r is None:
            stride_r = DEFAULT_STRIDE_R
            inferred["s_r"] = f"{stride_r}, upstream's setting (the stride is not stored in weights)"
        recursion_size = _setting(config, ("h", "h_test", "recursion_size"))
        if recursion_size is None:
            recursion_size = DEFAULT_RECURSION_SIZE
            inferred["h"] = f"{recursion_size}, upstream's test-time forward argument"

        params = dict(
            in_ch=in_ch,
            out_ch=_shape(state_dict, "reconstruction.conv2.weight")[0],
            dim=dim,
            depths=tuple(depths),
            reduced_dim=reduced_dim,
            num_heads=num_heads,
            pos_dim=pos_dim,
            mlp_hidden=_shape(state_dict, f"{LSA}.mlp.seq.0.weight")[0],
            scale=scale,
            reduction_kernel=_shape(state_dict, f"{RGSA}.DWConv.conv.weight")[-1],
            stride_r=stride_r,
            recursion_size=recursion_size,
        )
        model = NHS2828RGT(**params)
        info = ModelInfo(
            family="RGT_nhs2828",
            variant=VARIANT,
            scale=scale,
            config=params,
            inferred=inferred,
            notes=[
                f"{len(depths)} residual groups of {'/'.join(map(str, depths))} block pairs; "
                "any input size (padded internally to H%8=0, H>=64, W%32=0, then cropped)"
            ],
        )
        return self.describe(
            model,
            state_dict,
            info,
            supports_half=True,
            supports_bfloat16=True,
            in_ch=in_ch,
            out_ch=params["out_ch"],
        )


__all__ = ["NHS2828RGT", "NHS2828RGTArch"]
