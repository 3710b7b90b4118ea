"""Detector and loader for the nhs2828 unofficial RGT (its own key layout: ``conv1``, ``RGs.N.*``)."""

from __future__ import annotations

from ..common.arch_base import SRArchitecture
from .config import LSA, RGSA, VARIANT, NHS2828Config, read_config
from .model import NHS2828RGT


class NHS2828RGTArch(SRArchitecture):
    arch_id = "RGT_nhs2828"
    display_name = VARIANT
    required_keys = (
        "conv1.weight",
        "RGs.0.HAIs.0.alpha",
        f"{LSA.format(0)}.lsa.QKV.weight",
        f"{LSA.format(0)}.lsa.pos_bias.seq.0.weight",
        f"{LSA.format(0)}.mlp.seq.0.weight",
        f"{RGSA}.Q.weight",
        f"{RGSA}.DWConv.conv.weight",
        "RGs.0.final_conv.weight",
        "conv2.weight",
        "reconstruction.conv1.weight",
        "reconstruction.conv2.weight",
    )
    read_config = staticmethod(read_config)
    model_class = NHS2828RGT


__all__ = ["NHS2828RGT", "NHS2828Config", "NHS2828RGTArch", "read_config"]
