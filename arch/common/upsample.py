"""Sub-pixel upsamplers with the BasicSR/SwinIR key layout (``upsample.0``, ``upsample.2`` ...)."""

from __future__ import annotations

import math

from torch import nn


class PixelShuffleUpsample(nn.Sequential):
    """Conv + PixelShuffle stages: ``log2(scale)`` x2 stages for powers of two, one x3 stage for 3."""

    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"pixel-shuffle upsampling supports scales 2^n and 3, not {scale}")
        super().__init__(*layers)


class PixelShuffleDirect(nn.Sequential):
    """One conv straight to ``out_ch * scale^2`` channels, then PixelShuffle (lightweight models)."""

    def __init__(self, scale: int, num_feat: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(num_feat, scale * scale * out_ch, 3, 1, 1), nn.PixelShuffle(scale))


def pixelshuffle_scale(state_dict: dict, prefix: str = "upsample") -> int:
    """Scale of a :class:`PixelShuffleUpsample` from its conv shapes (4x channels per x2 stage)."""
    stages = sorted(
        int(k[len(prefix) + 1 :].split(".")[0])
        for k in state_dict
        if k.startswith(prefix + ".") and k.endswith(".weight")
    )
    if not stages:
        raise KeyError(f"no {prefix}.N.weight keys")
    w = state_dict[f"{prefix}.{stages[0]}.weight"]
    ratio = w.shape[0] // w.shape[1]
    if ratio == 9:
        return 3
    return 2 ** len(stages)
