"""HAT variants for the tests and benchmarks: spandrel constructor kwargs, official initialisation.

``VARIANTS`` holds the official releases (XPixelGroup/HAT ``options/test/*.yml``: HAT-S, HAT,
HAT-L at x2/x3/x4, and Real_HAT_GAN_SRx4, whose network is HAT's) and the small configs the tests
use. ``spandrel_module(name, seed)`` is spandrel's HAT built with its own (official) weight
initialisation under ``torch.manual_seed(seed)``; ``make_state_dict`` is its state dict. ``spandrel_pad`` is the padding spandrel's call API applies.
"""

from __future__ import annotations

import torch
from spandrel.architectures.HAT import HAT as SpandrelHAT

_COMMON = {"window_size": 16, "overlap_ratio": 0.5, "conv_scale": 0.01, "img_range": 1.0, "mlp_ratio": 2.0}
_HAT_S = {
    **_COMMON,
    "embed_dim": 144,
    "depths": (6,) * 6,
    "num_heads": (6,) * 6,
    "compress_ratio": 24,
    "squeeze_factor": 24,
}
_HAT = {
    **_COMMON,
    "embed_dim": 180,
    "depths": (6,) * 6,
    "num_heads": (6,) * 6,
    "compress_ratio": 3,
    "squeeze_factor": 30,
}
_HAT_L = {**_HAT, "depths": (6,) * 12, "num_heads": (6,) * 12}

OFFICIAL: dict[str, dict] = {
    **{f"HAT_S_x{s}": {**_HAT_S, "upscale": s} for s in (2, 3, 4)},
    **{f"HAT_x{s}": {**_HAT, "upscale": s} for s in (2, 3, 4)},
    **{f"HAT_L_x{s}": {**_HAT_L, "upscale": s} for s in (2, 3, 4)},
    "Real_HAT_GAN_x4": {**_HAT, "upscale": 4},
}

# Small configs the tests use (official structure, narrow and shallow).
SMALL: dict[str, dict] = {
    # the golden asset's config (tests/assets/hat_golden_x2.safetensors): small enough to store
    "golden_x2": {
        **_COMMON,
        "window_size": 8,
        "embed_dim": 16,
        "depths": (2, 1),
        "num_heads": (2, 4),
        "compress_ratio": 2,
        "squeeze_factor": 4,
        "num_feat": 16,
        "upscale": 2,
    },
    # the narrowest model with the official window (a plain and a shifted block), for large inputs
    "min_w16_x2": {
        **_COMMON,
        "embed_dim": 12,
        "depths": (2,),
        "num_heads": (2,),
        "compress_ratio": 3,
        "squeeze_factor": 4,
        "num_feat": 8,
        "upscale": 2,
    },
}

VARIANTS: dict[str, dict] = {**OFFICIAL, **SMALL}


def spandrel_module(name: str, seed: int = 0) -> torch.nn.Module:
    """spandrel's HAT for variant ``name`` with its official initialisation (seeded), in eval mode."""
    torch.manual_seed(seed)
    return SpandrelHAT(**VARIANTS[name]).eval()


def make_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of :func:`spandrel_module` (official keys, saved index buffers included)."""
    return spandrel_module(name, seed).state_dict()


def spandrel_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``x`` at the bottom/right to ``multiple`` the way spandrel's call API pads an input the
    model cannot take: reflect as far as the side allows, then repeat the edge."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    reflect_h, reflect_w = min(pad_h, h - 1), min(pad_w, w - 1)
    x = torch.nn.functional.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
    return torch.nn.functional.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
