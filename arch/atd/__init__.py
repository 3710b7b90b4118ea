"""ATD and ATD-light (Adaptive Token Dictionary, CVPR 2024): our model and its spandrel detector."""

from __future__ import annotations

from ..common.arch_base import SRArchitecture
from .config import LAYER0, ATDConfig, read_config
from .model import ATD


class ATDArch(SRArchitecture):
    """Adaptive Token Dictionary transformer (ATD, ATD-light, and custom configs)."""

    arch_id = "ATD"
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
    read_config = staticmethod(read_config)
    model_class = ATD


__all__ = ["ATD", "ATDArch", "ATDConfig", "read_config"]
