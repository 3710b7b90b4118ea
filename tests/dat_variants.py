"""DAT variants for the tests and benchmarks: spandrel constructor kwargs, reference modules, weights.

``VARIANTS`` holds the official releases (zhengchen1999/DAT; DAT-2 as released and as
traiNNer-redux's ``dat_2``) at full size and the small configs the tests use. Reference modules are
spandrel's DAT (the official code) with its own initialisation under ``torch.manual_seed(seed)``.

Tests import this module as ``dat_variants``; benchmarks as ``srt.tests.dat_variants``.
"""

from __future__ import annotations

import torch
from spandrel.architectures.DAT import DAT as SpandrelDAT

_SIX = dict(embed_dim=180, depth=[6] * 6, num_heads=[6] * 6, resi_connection="1conv")
_RELEASES = {
    "DAT": dict(_SIX, expansion_factor=4.0, split_size=[8, 32], upsampler="pixelshuffle"),
    "DAT_S": dict(_SIX, expansion_factor=2.0, split_size=[8, 16], upsampler="pixelshuffle"),
    "DAT_2": dict(_SIX, expansion_factor=2.0, split_size=[8, 32], upsampler="pixelshuffle"),
    "DAT_light": dict(
        embed_dim=60, depth=[18], num_heads=[6], expansion_factor=2.0, split_size=[8, 32],
        resi_connection="3conv", upsampler="pixelshuffledirect",
    ),
}  # fmt: skip
# name -> our variant name (DATConfig.variant)
RELEASE_NAMES = {"DAT": "DAT", "DAT_S": "DAT-S", "DAT_2": "DAT-2", "DAT_light": "DAT-light"}

VARIANTS: dict[str, dict] = {
    f"{name}_x{scale}": dict(kwargs, upscale=scale)
    for name, kwargs in _RELEASES.items()
    for scale in (2, 3, 4)
}
# Small configs (a few blocks, narrow) covering what the releases do not: odd head counts, groups of
# one block, square and odd windows, 1/4 channels, no qkv bias, every scale of both upsamplers.
_TINY = dict(embed_dim=48, depth=[2, 3], num_heads=[2, 4], expansion_factor=2.0, split_size=[4, 8])
VARIANTS.update(
    {
        "tiny_x2": dict(_TINY, upscale=2),
        "tiny_direct_x3": dict(_TINY, upscale=3, upsampler="pixelshuffledirect", resi_connection="3conv"),
        "tiny_gray_x1": dict(_TINY, upscale=1, in_chans=1, split_size=[4, 4], qkv_bias=False),
        "tiny_rgba_x8": dict(
            _TINY, embed_dim=60, upscale=8, in_chans=4, depth=[1, 2, 4], num_heads=[2, 5, 3]
        ),
        "tiny_odd_x4": dict(
            _TINY, upscale=4, split_size=[2, 8], depth=[3], num_heads=[3], expansion_factor=1.5
        ),
    }
)


def spandrel_module(name: str, seed: int = 0) -> torch.nn.Module:
    """spandrel's DAT for ``name`` with its official initialisation under ``torch.manual_seed(seed)``, eval."""
    torch.manual_seed(seed)
    return SpandrelDAT(**VARIANTS[name]).eval()


def make_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of :func:`spandrel_module` (saved buffers included, as in official files)."""
    return dict(spandrel_module(name, seed).state_dict())


def perturbed(sd: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    """``sd`` with what the official initialisation leaves trivial made generic: BatchNorm statistics
    and affine, LayerNorm affine, biases and channel-attention temperatures drawn at random (so a
    mix-up of any of them changes the output). Buffers that are not statistics are kept."""
    g = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return torch.empty(t.shape).uniform_(low, high, generator=g).to(t.dtype)

    out = {}
    for key, t in sd.items():
        if not t.is_floating_point() or key.endswith(("rpe_biases", "attn_mask_0", "attn_mask_1")):
            out[key] = t
        elif key.endswith("running_var") or key.endswith("temperature"):
            out[key] = draw(t, 0.5, 2.0)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            out[key] = draw(t, -0.1, 0.1)
        elif t.dim() == 1:  # norm weights
            out[key] = draw(t, 0.7, 1.3)
        else:
            out[key] = t
    return out
