"""SwinIR configurations: the official releases, DiffBIR's restorer and the small test configs.

``VARIANTS`` maps a name to spandrel's ``SwinIR`` constructor arguments. Official release names
(JingyunLiang/SwinIR, release v0.0) in brackets:

* classical SR, SwinIR-M, pixel-shuffle [001_classicalSR_DF2K_s64w8_SwinIR-M_x{2,3,4,8}.pth,
  001_classicalSR_DIV2K_s48w8_SwinIR-M_x{2,3,4,8}.pth];
* lightweight SR, SwinIR-S, one-step pixel-shuffle [002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{2,3,4}.pth];
* real-world SR, nearest + conv [003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x{2,4}_GAN.pth,
  003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_{GAN,PSNR}.pth];
* denoising, no upsampler [004_grayDN_DFWB_s128w8_SwinIR-M_noise{15,25,50}.pth,
  005_colorDN_DFWB_s128w8_SwinIR-M_noise{15,25,50}.pth];
* JPEG artifact removal, 7 px windows, inputs in [0, 255] [006_CAR_DFWB_s126w7_SwinIR-M_jpeg{10,20,30,40}.pth,
  006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg{10,20,30,40}.pth];
* DiffBIR's stage-1 restorer [lxq007/DiffBIR general_swinir_v1.ckpt]: pixel-unshuffle x8, 8 groups,
  nearest + conv x8, overall x1.

``spandrel_module(name, seed)``: spandrel's model with its official initialisation under
``torch.manual_seed(seed)`` (trained-like scales, unlike a random recipe). ``make_state_dict``:
its state dict, in the key layout the release files have (DiffBIR's ``conv_first.1``).
"""

from __future__ import annotations

import torch
from spandrel.architectures.SwinIR import SwinIR

M = dict(
    embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8, mlp_ratio=2.0, resi_connection="1conv"
)
S = dict(
    embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, window_size=8, mlp_ratio=2.0, resi_connection="1conv"
)
L = dict(
    embed_dim=240, depths=[6] * 9, num_heads=[8] * 9, window_size=8, mlp_ratio=2.0, resi_connection="3conv"
)


def _classical(scale: int, img_size: int) -> dict:
    return dict(M, upscale=scale, img_size=img_size, upsampler="pixelshuffle", img_range=1.0)


VARIANTS: dict[str, dict] = {
    "SwinIR_M_x2": _classical(2, 64),  # spandrel's snapshot SwinIR_M_s64w8_2x
    "SwinIR_M_x3": _classical(3, 48),
    "SwinIR_M_x4": _classical(4, 48),  # spandrel's snapshot SwinIR_M_s48w8_4x
    "SwinIR_M_x8": _classical(8, 48),
    **{
        f"SwinIR_S_x{s}": dict(S, upscale=s, img_size=64, upsampler="pixelshuffledirect", img_range=1.0)
        for s in (2, 3, 4)
    },
    "SwinIR_M_real_x2": dict(M, upscale=2, img_size=64, upsampler="nearest+conv", img_range=1.0),
    "SwinIR_M_real_x4": dict(M, upscale=4, img_size=64, upsampler="nearest+conv", img_range=1.0),
    "SwinIR_L_real_x4": dict(L, upscale=4, img_size=64, upsampler="nearest+conv", img_range=1.0),
    "SwinIR_M_noise_gray": dict(M, in_chans=1, upscale=1, img_size=128, upsampler="", img_range=1.0),
    "SwinIR_M_noise_color": dict(M, in_chans=3, upscale=1, img_size=128, upsampler="", img_range=1.0),
    "SwinIR_M_jpeg_gray": dict(M, in_chans=1, upscale=1, img_size=126, window_size=7, upsampler="", img_range=255.0),
    "SwinIR_M_jpeg_color": dict(M, in_chans=3, upscale=1, img_size=126, window_size=7, upsampler="", img_range=255.0),
    "DiffBIR_General": dict(
        M, depths=[6] * 8, num_heads=[6] * 8, upscale=8, img_size=64, upsampler="nearest+conv",
        img_range=1.0, start_unshuffle=8,
    ),
    # spandrel's tests/test_SwinIR.py test_load configs (constructor defaults: embed 96, mlp 4, x1)
    "spandrel_default_w8": dict(window_size=8),
    "spandrel_4x6_w8": dict(depths=[6, 6, 6, 6], num_heads=[6, 6, 6, 6], window_size=8),
    "spandrel_6621_w8": dict(depths=[6, 6, 2, 1], num_heads=[6, 4, 6, 3], window_size=8),
}  # fmt: skip

OFFICIAL = [name for name in VARIANTS if not name.startswith("spandrel_")]


def spandrel_module(name: str, seed: int = 0) -> torch.nn.Module:
    """spandrel's SwinIR for ``name`` with its official initialisation under ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return SwinIR(**VARIANTS[name]).eval()


def to_release_layout(state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The keys the released file has: DiffBIR's first conv follows a PixelUnshuffle (``conv_first.1``)."""
    if VARIANTS[name].get("start_unshuffle", 1) == 1:
        return dict(state_dict)
    renamed = {
        k.replace("conv_first.", "conv_first.1.", 1) if k.startswith("conv_first.") else k: v
        for k, v in state_dict.items()
    }
    return renamed


def make_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of :func:`spandrel_module` in the release files' key layout."""
    return to_release_layout(spandrel_module(name, seed).state_dict(), name)
