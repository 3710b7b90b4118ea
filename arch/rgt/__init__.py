"""RGT (Recursive Generalization Transformer, ICLR 2024): our model and its spandrel detector.

Official release configs: RGT (8 groups x 6 blocks) and RGT-S (6 x 6), embed 180, 6 heads,
MLP ratio 2, split_size [8, 32], c_ratio 0.5, x2/x3/x4.
"""

from __future__ import annotations

from spandrel import SizeRequirements

from ..common.arch_base import SRArchitecture
from .config import RGTConfig, read_config
from .model import MIN_INPUT_SIZE, RGT, InputSizeError


class RGTArch(SRArchitecture):
    """Detects official-layout RGT checkpoints (official, spandrel, traiNNer-redux, neosr)."""

    # Saved derived buffers (rpe_biases, relative_position_index, attn_mask_*) are optional.
    arch_id = "RGT"
    required_keys = (
        "conv_first.weight",
        "before_RG.1.weight",
        "layers.0.blocks.0.gamma",
        "layers.0.blocks.0.norm1.weight",
        "layers.0.blocks.0.attn.qkv.weight",
        "layers.0.blocks.0.attn.proj.weight",
        "layers.0.blocks.0.attn.get_v.weight",
        "layers.0.blocks.0.attn.attns.0.pos.pos_proj.weight",
        "layers.0.blocks.0.attn.attns.0.pos.pos3.2.weight",
        "layers.0.blocks.0.mlp.fc1.weight",
        "layers.0.blocks.0.mlp.sg.conv.weight",
        "layers.0.blocks.0.mlp.fc2.weight",
        "layers.0.blocks.0.norm2.weight",
        "norm.weight",
        "conv_before_upsample.0.weight",
        "conv_last.weight",
    )
    read_config = staticmethod(read_config)
    model_class = RGT  # half precision measured: tests/test_rgt.py (PSNR vs fp32 on photo crops)

    def size_requirements(self, config: RGTConfig) -> SizeRequirements:
        return SizeRequirements(minimum=MIN_INPUT_SIZE)


__all__ = ["RGT", "InputSizeError", "RGTArch", "RGTConfig", "read_config"]
