"""SwinIR's key layout: what identifies it, and what rules out its look-alikes.

HAT's and Swin2SR's state dicts contain every key a SwinIR block has (HAT adds ``conv_block`` and
``overlap_attn`` beside the blocks, Swin2SR ``logit_scale`` and ``cpb_mlp`` inside them), so
SwinIR is recognised by its required keys *and* by its residual groups holding nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

BLOCK0 = "layers.0.residual_group.blocks.0."

# Keys that identify SwinIR (besides conv_first, see conv_first_prefix).
REQUIRED_KEYS = (
    BLOCK0 + "norm1.weight",
    BLOCK0 + "attn.relative_position_bias_table",
    BLOCK0 + "attn.qkv.weight",
    BLOCK0 + "attn.proj.weight",
    BLOCK0 + "norm2.weight",
    BLOCK0 + "mlp.fc1.weight",
    BLOCK0 + "mlp.fc2.weight",
    "norm.weight",
)

# Everything a residual group (RSTB) of SwinIR may hold: its Swin layers (with the saved position
# index and shift mask buffers) and the closing conv (1conv, or the 3conv bottleneck).
_BLOCK_PARAMS = (
    r"norm[12]\.(weight|bias)",
    r"attn\.(relative_position_bias_table|relative_position_index)",
    r"attn\.(qkv|proj)\.(weight|bias)",
    r"mlp\.fc[12]\.(weight|bias)",
    r"attn_mask",
)
_GROUP_KEY = re.compile(
    r"^layers\.\d+\.(residual_group\.blocks\.\d+\.(" + "|".join(_BLOCK_PARAMS) + r")"
    r"|conv\.(\d+\.)?(weight|bias))$"
)


def conv_first_prefix(state_dict: Mapping) -> str:
    """``conv_first``, or ``conv_first.1`` where it follows a PixelUnshuffle (DiffBIR's layout)."""
    return "conv_first.1" if "conv_first.1.weight" in state_dict else "conv_first"


def missing_swinir_keys(state_dict: Mapping) -> list[str]:
    """Required keys absent from ``state_dict`` (the first conv in either layout)."""
    missing = [k for k in REQUIRED_KEYS if k not in state_dict]
    if f"{conv_first_prefix(state_dict)}.weight" not in state_dict:
        missing.insert(0, "conv_first.weight")
    return missing


def foreign_group_keys(state_dict: Mapping) -> list[str]:
    """Keys under ``layers.`` that no SwinIR residual group has (HAT's, Swin2SR's ...)."""
    return [k for k in state_dict if k.startswith("layers.") and not _GROUP_KEY.match(k)]
