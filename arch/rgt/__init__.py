"""RGT (Recursive Generalization Transformer, ICLR 2024): our model and its spandrel detector.

Official release configs: RGT (8 groups x 6 blocks) and RGT-S (6 x 6), embed 180, 6 heads,
MLP ratio 2, split_size [8, 32], c_ratio 0.5, x2/x3/x4.
"""

from __future__ import annotations

from spandrel import ImageModelDescriptor, SizeRequirements

from ..common.arch_base import ModelInfo, SRArchitecture
from .config import OFFICIAL_SPLIT, read_config
from .model import MIN_INPUT_SIZE, RGT, InputSizeError

_OFFICIAL = {"embed_dim": 180, "mlp_ratio": 2.0, "c_ratio": 0.5, "in_chans": 3, "resi_connection": "1conv"}
_VARIANTS = {8: "RGT", 6: "RGT-S"}


def variant_name(config: dict) -> str:
    """Variant label: ``RGT`` / ``RGT-S`` for the official release configs, else ``RGT (custom)``."""
    depth, heads = config["depth"], config["num_heads"]
    official = (
        all(config[k] == v for k, v in _OFFICIAL.items())
        and sorted(config["split_size"]) == sorted(OFFICIAL_SPLIT)
        and set(depth) == {6}
        and set(heads) == {6}
    )
    return _VARIANTS.get(len(depth), "RGT (custom)") if official else "RGT (custom)"


class RGTArch(SRArchitecture):
    """Detects official-layout RGT checkpoints (official, spandrel, traiNNer-redux, neosr)."""

    # Saved derived buffers (rpe_biases, relative_position_index, attn_mask_*) are optional.
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

    def __init__(self) -> None:
        super().__init__(id="RGT", name="RGT")

    def load_with_config(self, state_dict, config: dict | None) -> ImageModelDescriptor:
        """Build RGT from tensor shapes; ``config`` (traiNNer-redux metadata) settles the rest."""
        hyper, inferred = read_config(state_dict, config)
        model = RGT(**hyper)
        info = ModelInfo(
            family="RGT",
            variant=variant_name(hyper),
            scale=hyper["scale"],
            config=hyper,
            inferred=inferred,
        )
        return self.describe(
            model,
            state_dict,
            info,
            supports_half=True,  # measured: tests/test_rgt.py (PSNR vs fp32 on photo crops)
            supports_bfloat16=True,
            in_ch=hyper["in_chans"],
            out_ch=hyper["in_chans"],
            size_requirements=SizeRequirements(minimum=MIN_INPUT_SIZE),
        )


__all__ = ["RGT", "InputSizeError", "RGTArch", "read_config", "variant_name"]
