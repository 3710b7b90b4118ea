"""SwinIR family (Image Restoration Using Swin Transformer, ICCVW 2021): our model and its detector.

Classical (SwinIR-M), lightweight (SwinIR-S) and real-world (SwinIR-M/-L) super-resolution,
denoising and JPEG artifact removal, DiffBIR's stage-1 restorer, and custom configs (id "SwinIR",
as spandrel's).
"""

from __future__ import annotations

from spandrel import SizeRequirements

from ..common.arch_base import SRArchitecture
from .config import SwinIRConfig, read_config
from .keys import REQUIRED_KEYS, foreign_group_keys, missing_swinir_keys
from .model import SwinIR


class SwinIRArch(SRArchitecture):
    """Every SwinIR task and size, detected by the official key layout and nothing more in its groups
    (HAT and Swin2SR hold SwinIR's keys plus their own: see keys.py)."""

    arch_id = "SwinIR"
    required_keys = ("conv_first.weight", *REQUIRED_KEYS)
    read_config = staticmethod(read_config)
    model_class = SwinIR

    def missing(self, state_dict) -> list[str]:
        return missing_swinir_keys(state_dict)

    def detect(self, state_dict) -> bool:
        return not missing_swinir_keys(state_dict) and not foreign_group_keys(state_dict)

    def size_requirements(self, config: SwinIRConfig) -> SizeRequirements:
        # any size works (the model pads); whole windows avoid the padding work
        return SizeRequirements(multiple_of=config.window_size * config.unshuffle)


__all__ = ["SwinIR", "SwinIRArch", "SwinIRConfig", "read_config"]
