"""DRCT family (Dense-Residual-Connected Transformer, CVPRW 2024): our model and its detector (id "DRCT").

DRCT, DRCT-L, DRCT-XL and custom depths/widths, with our own implementation.
"""

from __future__ import annotations

from spandrel import SizeRequirements

from ..common.arch_base import SRArchitecture
from .config import DRCTConfig, read_config
from .model import DRCT


class DRCTArch(SRArchitecture):
    """DRCT, DRCT-L, DRCT-XL and custom configs, detected by the official key layout."""

    arch_id = "DRCT"
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
    read_config = staticmethod(read_config)
    model_class = DRCT

    def size_requirements(self, config: DRCTConfig) -> SizeRequirements:
        # any size works (the model pads); whole windows avoid the padding work
        return SizeRequirements(multiple_of=config.window_size)


__all__ = ["DRCT", "DRCTArch", "DRCTConfig", "read_config"]
