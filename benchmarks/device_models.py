"""Models, inputs, calls and FLOP counts for :mod:`benchmarks.device_report`.

Weights are built in-process, seeded: each official release config is constructed with
spandrel's own architecture classes and given the official repositories' initialisation. RGT,
DRCT, ATD: the configs below, then ``tests/model_helpers.py``'s ``official_init`` (their
``_init_weights``, position-bias tables, ATD's own parameters). HAT, DAT, SwinIR: the configs of
their tests (``tests/<family>_variants.py``'s ``VARIANTS``: spandrel's constructor arguments),
whose constructors run the official initialisation themselves under ``torch.manual_seed(seed)``
(as the tests' ``spandrel_module`` does). Its ``state_dict()``
then goes through both loaders, so ours and spandrel's reference hold the same tensors. ``--quick``
builds reduced versions of the same configs (fewer groups / blocks, embed dim 60 instead of
144-240, 6 heads; ATD-light keeps its 48): only the code paths are exercised, the numbers mean nothing.
The trained test asset ``tests/assets/ATD_light_x2_trained.safetensors`` is loaded the same way.

:data:`VARIANTS` (every ``--variants`` choice) is :data:`CORE_VARIANTS` (RGT, DRCT, ATD: every
section) and :data:`EXTRA_VARIANTS` (HAT, DAT, SwinIR), which the report measures lighter unless
they are named in ``--variants``. A run without ``--variants`` measures :data:`DEFAULT_VARIANTS`:
one variant per family, ATD with both upsamplers (see :mod:`benchmarks.device_report`).
"""

from __future__ import annotations

import copy
import importlib
import os
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINED_ASSET = os.path.join(REPO, "tests", "assets", "ATD_light_x2_trained.safetensors")
TRAINED = "ATD_light_x2 (trained asset)"

_RGT = dict(embed_dim=180, mlp_ratio=2, split_size=[8, 32], c_ratio=0.5, resi_connection="1conv")
_DRCT = dict(embed_dim=180, window_size=16, mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv")
_ATD = dict(
    embed_dim=210, window_size=16, category_size=256, num_tokens=128, reducted_dim=20,
    convffn_kernel_size=5, mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv",
)  # fmt: skip
_ATD_LIGHT = dict(
    embed_dim=48, window_size=16, category_size=128, num_tokens=64, reducted_dim=8,
    convffn_kernel_size=7, mlp_ratio=1, upsampler="pixelshuffledirect", resi_connection="1conv",
)  # fmt: skip

# variant: (family, constructor arguments besides depth, depth per group (official), quick depths)
CONFIGS: dict[str, tuple[str, dict, list[int], list[int]]] = {
    "RGT_x4": ("RGT", _RGT, [6] * 8, [4]),
    "RGT_S_x4": ("RGT", _RGT, [6] * 6, [2]),
    "DRCT_x4": ("DRCT", _DRCT, [6] * 6, [6]),
    "DRCT_L_x4": ("DRCT", _DRCT, [6] * 12, [6, 6]),
    "ATD_x4": ("ATD", _ATD, [6] * 6, [2]),
    "ATD_light_x4": ("ATD", _ATD_LIGHT, [6] * 4, [2]),
}
# HAT, DAT, SwinIR: the official config is ``srt.tests.<module>``'s ``VARIANTS[variant]``.
# variant: (family, quick depths); the quick version overrides the depth list, embed dim and heads.
SPANDREL_CONFIGS: dict[str, tuple[str, list[int]]] = {
    "HAT_S_x4": ("HAT", [2]),
    "HAT_x4": ("HAT", [2]),
    "HAT_L_x4": ("HAT", [2, 2]),
    "DAT_x4": ("DAT", [2]),
    "DAT_light_x4": ("DAT", [2]),
    "DAT_2_x4": ("DAT", [2]),  # 4x-UltraSharpV2's architecture
    "SwinIR_M_x4": ("SwinIR", [2]),
    "SwinIR_S_x4": ("SwinIR", [2]),
    "SwinIR_L_real_x4": ("SwinIR", [2, 2]),
}
FAMILY_MODULES = {"HAT": "hat_variants", "DAT": "dat_variants", "SwinIR": "swinir_variants"}
DEPTH_ARG = {"HAT": "depths", "DAT": "depth", "SwinIR": "depths"}  # the constructor's name for it
# --quick only: narrower too (the x4 upsampler's 64 channels stay), so the CPU smoke run is short.
# HAT: embed dim divisible by the heads (its window stays 16); DAT: half the heads per branch.
QUICK_EMBED = {"RGT": 60, "DRCT": 60, "ATD": 60, "HAT": 60, "DAT": 60, "SwinIR": 60}
HEADS = {"RGT": 6, "DRCT": 6, "ATD": 6, "HAT": 6, "DAT": 6, "SwinIR": 6}

CORE_VARIANTS = list(CONFIGS)
EXTRA_VARIANTS = list(SPANDREL_CONFIGS)
VARIANTS = CORE_VARIANTS + EXTRA_VARIANTS
DEFAULT_VARIANTS = ["RGT_x4", "DRCT_x4", "ATD_x4", "ATD_light_x4", "HAT_S_x4", "DAT_light_x4", "SwinIR_M_x4"]


def family_of(variant: str) -> str:
    return CONFIGS[variant][0] if variant in CONFIGS else SPANDREL_CONFIGS[variant][0]


def import_pack():
    """Register the checkout as package ``srt`` (:func:`.common.import_pack`) and return ``srt.arch``."""
    common.import_pack()
    return importlib.import_module("srt.arch")


def official_state_dict(variant: str, quick: bool, seed: int = 0) -> dict[str, Tensor]:
    """Weights of ``variant`` (official config, or its reduced quick version), official init."""
    if variant in SPANDREL_CONFIGS:
        return _spandrel_family_state_dict(variant, quick, seed)
    from spandrel.architectures.ATD import ATD
    from spandrel.architectures.DRCT import DRCT
    from spandrel.architectures.RGT import RGT

    family, kwargs, depth, quick_depth = CONFIGS[variant]
    depth = quick_depth if quick else depth
    if quick and kwargs["embed_dim"] > QUICK_EMBED[family]:
        kwargs = {**kwargs, "embed_dim": QUICK_EMBED[family]}
    heads = 4 if variant.startswith("ATD_light") else HEADS[family]
    scale = int(variant.rsplit("_x", 1)[1])
    common = dict(upscale=scale, in_chans=3, img_size=64, img_range=1.0, num_heads=[heads] * len(depth))
    torch.manual_seed(seed)
    if family == "RGT":
        model = RGT(depth=depth, **common, **kwargs)
    elif family == "DRCT":
        model = DRCT(depths=depth, **common, **kwargs)
    else:
        model = ATD(depths=depth, **common, **kwargs)
    importlib.import_module("srt.tests.model_helpers").official_init(model, seed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def spandrel_kwargs(variant: str, quick: bool) -> dict:
    """spandrel's constructor arguments for a HAT / DAT / SwinIR ``variant``: the tests' official
    config, or (``quick``) that with a shorter depth list, embed dim at most 60 and 6 heads."""
    family, quick_depth = SPANDREL_CONFIGS[variant]
    import_pack()  # srt.tests
    kwargs = dict(importlib.import_module(f"srt.tests.{FAMILY_MODULES[family]}").VARIANTS[variant])
    if quick:
        kwargs[DEPTH_ARG[family]] = list(quick_depth)
        kwargs["num_heads"] = [HEADS[family]] * len(quick_depth)
        kwargs["embed_dim"] = min(kwargs["embed_dim"], QUICK_EMBED[family])
    return kwargs


def _spandrel_family_state_dict(variant: str, quick: bool, seed: int) -> dict[str, Tensor]:
    """HAT / DAT / SwinIR: spandrel's class, whose constructor runs the official initialisation."""
    family = SPANDREL_CONFIGS[variant][0]
    cls = getattr(importlib.import_module(f"spandrel.architectures.{family}"), family)
    kwargs = spandrel_kwargs(variant, quick)
    torch.manual_seed(seed)  # as the tests' spandrel_module(variant, seed)
    model = cls(**kwargs)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class Pair:
    """One set of weights loaded twice: ours and spandrel's reference (both CPU, fp32, eval)."""

    name: str
    family: str
    ours: object  # ImageModelDescriptor wrapping our module
    ref: object  # spandrel's ImageModelDescriptor
    build_s: float
    params: int


def load_pair(name: str, quick: bool) -> Pair:
    """Build ``name`` (a variant or :data:`TRAINED`) through our loader and spandrel's."""
    import spandrel

    arch = import_pack()
    t0 = time.perf_counter()
    if name == TRAINED:
        from safetensors.torch import load_file

        sd, family = load_file(TRAINED_ASSET), "ATD"
    else:
        sd, family = official_state_dict(name, quick), family_of(name)
    ours = arch.load_state_dict(dict(sd)).eval()
    ref = spandrel.ModelLoader().load_from_state_dict(dict(sd)).eval()
    params = sum(p.numel() for p in ours.model.parameters())
    return Pair(name, family, ours, ref, time.perf_counter() - t0, params)


def on_device(desc, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A copy of ``desc.model`` on ``device`` in ``dtype``, as the engine places it (the original stays fp32)."""
    module = copy.deepcopy(desc.model).to(device=device, dtype=dtype).eval()
    # no parameter asks for gradients: FlopCounterMode's module tracker hooks autograd otherwise
    return module.requires_grad_(False)


def raw_call(desc, module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` the way ``desc(x)`` calls it (padded to its size requirement, cropped), unclamped."""
    h, w = x.shape[-2:]
    req = desc.size_requirements
    pad_w, pad_h = req.get_padding(w, h) if req is not None else (0, 0)
    if pad_w or pad_h:  # spandrel's padding: reflect as far as possible, then replicate
        rw, rh = min(pad_w, w - 1), min(pad_h, h - 1)
        x = torch.nn.functional.pad(x, (0, rw, 0, rh), "reflect")
        x = torch.nn.functional.pad(x, (0, pad_w - rw, 0, pad_h - rh), "replicate")
    y = module(x)
    s = int(desc.scale)
    return y[..., : h * s, : w * s]


def photo(h: int, w: int, top: int = 0, left: int = 0) -> Tensor:
    """A crop of scikit-image's astronaut photo as ``(1, 3, h, w)`` float32 in [0, 1].

    Larger than the 512 px photo: the photo is first enlarged (bicubic, clamped) to cover the size.
    """
    import numpy as np
    from skimage import data

    img = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1)[None].float() / 255.0
    need = max(top + h, left + w)
    if need > img.shape[-1]:
        size = -(-need // 512) * 512
        img = torch.nn.functional.interpolate(img, size=(size, size), mode="bicubic").clamp(0, 1)
    return img[..., top : top + h, left : left + w].contiguous()


def count_flops(fn) -> tuple[object, int]:
    """Run ``fn()`` under ``FlopCounterMode`` (2 FLOP per multiply-add); returns its result and the count.

    ``no_grad`` rather than ``inference_mode``: the counter's module tracker hooks autograd.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = fn()
    return out, int(counter.get_total_flops())
