"""DAT (Dual Aggregation Transformer, ICCV 2023): our model and its spandrel detector.

Official releases (zhengchen1999/DAT): DAT (embed 180, 6 groups x 6 blocks, expansion 4, split
[8, 32]), DAT-S (expansion 2, split [8, 16]), DAT-2 (expansion 2, split [8, 32]) and DAT-light
(embed 60, one group of 18, 3conv, pixel-shuffle-direct), x2/x3/x4.
"""

from __future__ import annotations

from ..common.arch_base import SRArchitecture
from .config import DATConfig, read_config
from .model import DAT


class DATArch(SRArchitecture):
    """Detects official-layout DAT checkpoints (official, spandrel, traiNNer-redux, neosr)."""

    # Saved derived buffers (rpe_biases, relative_position_index, attn_mask_*) are optional.
    arch_id = "DAT"
    required_keys = (
        "conv_first.weight",
        "before_RG.1.weight",
        "layers.0.blocks.0.norm1.weight",
        "layers.0.blocks.0.attn.qkv.weight",
        "layers.0.blocks.0.attn.proj.weight",
        "layers.0.blocks.0.attn.dwconv.0.weight",
        "layers.0.blocks.0.attn.dwconv.1.running_var",
        "layers.0.blocks.0.attn.channel_interaction.1.weight",
        "layers.0.blocks.0.attn.spatial_interaction.0.weight",
        "layers.0.blocks.0.attn.attns.0.pos.pos_proj.weight",
        "layers.0.blocks.0.attn.attns.0.pos.pos3.2.weight",
        "layers.0.blocks.0.ffn.fc1.weight",
        "layers.0.blocks.0.ffn.sg.conv.weight",
        "layers.0.blocks.0.ffn.fc2.weight",
        "layers.0.blocks.0.norm2.weight",
        "norm.weight",
    )
    read_config = staticmethod(read_config)
    model_class = DAT  # half precision measured: tests/test_dat.py (PSNR vs fp32 on photo crops)


__all__ = ["DAT", "DATArch", "DATConfig", "read_config"]
