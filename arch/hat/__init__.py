"""HAT family (Hybrid Attention Transformer, CVPR 2023): our model and its detector (id "HAT").

HAT-S, HAT, HAT-L, Real_HAT_GAN and custom configs, with our own implementation.
"""

from __future__ import annotations

from spandrel import SizeRequirements

from ..common.arch_base import SRArchitecture
from .config import HATConfig, read_config
from .model import HAT


class HATArch(SRArchitecture):
    """HAT-S, HAT, HAT-L and custom configs, detected by the official key layout.

    The conv branch (``conv_block``) and the overlapping cross-attention (``overlap_attn``) tell
    HAT from SwinIR, whose groups share the rest of these key names.
    """

    arch_id = "HAT"
    required_keys = (
        "conv_first.weight",
        "layers.0.residual_group.blocks.0.norm1.weight",
        "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
        "layers.0.residual_group.blocks.0.attn.qkv.weight",
        "layers.0.residual_group.blocks.0.conv_block.cab.0.weight",
        "layers.0.residual_group.blocks.0.conv_block.cab.2.weight",
        "layers.0.residual_group.blocks.0.conv_block.cab.3.attention.1.weight",
        "layers.0.residual_group.blocks.0.conv_block.cab.3.attention.3.weight",
        "layers.0.residual_group.blocks.0.mlp.fc1.weight",
        "layers.0.residual_group.overlap_attn.relative_position_bias_table",
        "layers.0.residual_group.overlap_attn.qkv.weight",
        "layers.0.residual_group.overlap_attn.mlp.fc1.weight",
        "norm.weight",
        "conv_last.weight",
    )
    read_config = staticmethod(read_config)
    model_class = HAT

    def size_requirements(self, config: HATConfig) -> SizeRequirements:
        # any size works (the model pads); whole windows avoid the padding work
        if config.ape:
            return SizeRequirements(minimum=config.img_size, multiple_of=config.img_size, square=True)
        return SizeRequirements(multiple_of=config.window_size)


__all__ = ["HAT", "HATArch", "HATConfig", "read_config"]
