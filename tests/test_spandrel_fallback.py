"""Checkpoints of our families that spandrel builds: ours or spandrel's, never an error.

Configs spandrel 0.4.2 loads but our implementation refuses (DRCT without reconstruction, DRCT and
ATD with an absolute position embedding) go to spandrel's implementation, and the info text says
so; x1 pixel-shuffle SwinIR/ATD are built by ours. Then random valid configs of each family, built
with spandrel's classes, load through our registry and match spandrel's output.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from hat_variants import spandrel_pad
from model_helpers import max_abs
from spandrel import MAIN_REGISTRY, UnsupportedModelError
from spandrel.architectures.ATD import ATD
from spandrel.architectures.DAT import DAT
from spandrel.architectures.DRCT import DRCT
from spandrel.architectures.HAT import HAT
from spandrel.architectures.RGT import RGT
from spandrel.architectures.SwinIR import SwinIR

from srt.arch import load_state_dict
from srt.arch.errors import ConfigError
from srt.engine.describe import describe

FALLBACK = "spandrel's implementation"


def _state_dict(cls, seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(cls(**kwargs).eval().state_dict())


def _outputs(sd: dict, x: torch.Tensor, multiple: int = 0):
    """(our loader's descriptor, its module's output, spandrel's module's output) for ``x``; the
    reference input padded as spandrel's call API pads it, or to ``multiple`` (DRCT: spandrel asks
    for 16, the official code pads to whole windows); ours pads internally."""
    desc = load_state_dict(dict(sd), source="x.pth").eval()
    ref = MAIN_REGISTRY.load(dict(sd)).eval()
    h, w = x.shape[-2:]
    padded = spandrel_pad(x, multiple or ref.size_requirements.multiple_of)
    with torch.inference_mode():
        out = desc.model(x if getattr(desc, "srt_info", None) else padded)
        expected = ref.model(padded)
    return desc, out[..., : h * ref.scale, : w * ref.scale], expected[..., : h * ref.scale, : w * ref.scale]


_SWIN = dict(embed_dim=16, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2.0, img_size=8)
_ATD = dict(_SWIN, num_tokens=8, reducted_dim=4, category_size=32)

CASES = {  # name -> (spandrel class, kwargs, input side, built by spandrel's implementation)
    "swinir_pixelshuffle_x1": (SwinIR, dict(_SWIN, upscale=1, upsampler="pixelshuffle"), 12, False),
    "atd_pixelshuffle_x1": (ATD, dict(_ATD, upscale=1, upsampler="pixelshuffle"), 12, False),
    "drct_no_reconstruction": (DRCT, dict(_SWIN, gc=8, upscale=1, upsampler=""), 12, True),
    "drct_ape": (
        DRCT,
        dict(_SWIN, img_size=16, gc=8, upscale=2, upsampler="pixelshuffle", ape=True),
        16,
        True,
    ),
    # spandrel reads an ATD ape model as trained at 64 px, and it only runs at that size
    "atd_ape": (ATD, dict(_ATD, img_size=64, upscale=2, upsampler="pixelshuffle", ape=True), 64, True),
}


@pytest.mark.parametrize("name", CASES)
def test_configs_spandrel_loads_are_loaded(name):
    cls, kwargs, side, by_spandrel = CASES[name]
    sd = _state_dict(cls, **kwargs)
    torch.manual_seed(1)
    x = torch.rand(1, 3, side, side - (0 if kwargs.get("ape") else 1))
    desc, out, expected = _outputs(sd, x)
    assert out.shape == expected.shape and max_abs(out, expected) <= 1e-5
    text = describe(desc, "x.pth")
    assert (FALLBACK in text) == by_spandrel, text
    assert (getattr(desc, "srt_info", None) is None) == by_spandrel
    if by_spandrel:  # the reason is our refusal's first line, naming the file
        assert f"{FALLBACK}: x.pth: " in text and "\n" not in desc.srt_fallback


def test_our_error_stands_where_spandrel_fails_too():
    sd = _state_dict(ATD, **CASES["atd_ape"][1])
    sd["absolute_pos_embed"] = torch.zeros(1, 100, 16)  # no size spandrel can build
    with pytest.raises(ConfigError, match=r"^x\.pth: ATD checkpoint .*ape=True"):
        load_state_dict(sd, source="x.pth")


def test_bad_training_metadata_is_still_refused():
    """spandrel ignores metadata: a bad value in it is the file's fault, not a config we lack."""
    sd = _state_dict(ATD, **CASES["atd_pixelshuffle_x1"][1])
    with pytest.raises(ConfigError, match="category_size"):
        load_state_dict(sd, {"metadata": json.dumps({"category_size": 0})}, source="x.pth")


# ---- random configs ---------------------------------------------------------------------------------


def _heads(r: random.Random, groups: int) -> tuple[list[int], list[int], int]:
    depths = [r.randint(1, 2) for _ in range(groups)]
    heads = [r.choice([1, 2, 4]) for _ in range(groups)]
    return depths, heads, 8 * r.choice([2, 3, 4])  # embed_dim: a multiple of 8, of every head count


def _swinir(r: random.Random) -> tuple[type, dict, int]:
    depths, heads, dim = _heads(r, r.randint(1, 2))
    window = r.choice([4, 8])
    upsampler, scale = r.choice(
        [("pixelshuffle", r.choice([1, 2, 3, 4])), ("pixelshuffledirect", r.choice([2, 3])),
         ("nearest+conv", r.choice([2, 4])), ("", 1)]
    )  # fmt: skip
    kwargs = dict(
        embed_dim=dim, depths=depths, num_heads=heads, window_size=window, img_size=2 * window,
        mlp_ratio=r.choice([1.0, 2.0]), upscale=scale, upsampler=upsampler,
        resi_connection=r.choice(["1conv", "3conv"]),
    )  # fmt: skip
    return SwinIR, kwargs, window


def _drct(r: random.Random) -> tuple[type, dict, int]:
    depths, heads, dim = _heads(r, r.randint(1, 2))
    window = r.choice([4, 8])
    kwargs = dict(
        embed_dim=dim, depths=depths, num_heads=heads, window_size=window, img_size=2 * window,
        gc=r.choice([8, 16]), upscale=r.choice([1, 2, 3, 4]), upsampler="pixelshuffle",
    )  # fmt: skip
    return DRCT, kwargs, window


def _atd(r: random.Random) -> tuple[type, dict, int]:
    depths, heads, dim = _heads(r, r.randint(1, 2))
    window = r.choice([4, 8])
    upsampler, scale = r.choice(
        [("pixelshuffle", r.choice([1, 2, 3, 4])), ("pixelshuffledirect", 2), ("", 1)]
    )
    kwargs = dict(
        embed_dim=dim, depths=depths, num_heads=heads, window_size=window, img_size=2 * window,
        num_tokens=r.choice([8, 16]), reducted_dim=r.choice([2, 4]), convffn_kernel_size=r.choice([3, 5]),
        upscale=scale, upsampler=upsampler,
    )  # fmt: skip
    return ATD, kwargs, window


def _hat(r: random.Random) -> tuple[type, dict, int]:
    depths, heads, dim = _heads(r, r.randint(1, 2))
    depths = [d + d % 2 for d in depths]  # HAT's groups alternate plain and shifted blocks
    window = r.choice([4, 8])
    kwargs = dict(
        embed_dim=dim, depths=depths, num_heads=heads, window_size=window, img_size=2 * window,
        compress_ratio=r.choice([2, 4]), squeeze_factor=r.choice([2, 4]), overlap_ratio=0.5,
        mlp_ratio=2.0, upscale=r.choice([1, 2, 3, 4]), num_feat=r.choice([8, 16]),
    )  # fmt: skip
    return HAT, kwargs, window


def _dat(r: random.Random) -> tuple[type, dict, int]:
    depths, heads, dim = _heads(r, r.randint(1, 2))
    heads = [max(2, h) for h in heads]  # DAT splits its heads between two branches
    split = r.choice([[2, 4], [4, 4], [4, 8]])
    upsampler, scale = r.choice(
        [("pixelshuffle", r.choice([1, 2, 3, 4])), ("pixelshuffledirect", r.choice([2, 3]))]
    )
    kwargs = dict(
        embed_dim=dim, depth=depths, num_heads=heads, split_size=split, expansion_factor=2.0,
        upscale=scale, upsampler=upsampler, resi_connection=r.choice(["1conv", "3conv"]),
    )  # fmt: skip
    return DAT, kwargs, max(split)


def _rgt(r: random.Random) -> tuple[type, dict, int]:
    depths, heads, dim = _heads(r, r.randint(1, 2))
    heads = [max(2, h) for h in heads]  # RGT splits its heads between two branches
    kwargs = dict(
        embed_dim=dim, depth=depths, num_heads=heads, split_size=[8, 8], mlp_ratio=2.0,
        upscale=r.choice([1, 2, 3, 4]), resi_connection=r.choice(["1conv", "3conv"]),
    )  # fmt: skip
    return RGT, kwargs, 16  # RGT takes inputs of at least 16 px


FAMILIES = {"SwinIR": _swinir, "DRCT": _drct, "ATD": _atd, "HAT": _hat, "DAT": _dat, "RGT": _rgt}
SEEDS = (0, 1)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_random_configs_match_spandrel(family, seed):
    """Ours builds every one of them and matches spandrel at a window multiple and an odd size."""
    r = random.Random(f"{family}-{seed}")
    for _ in range(20):  # valid: a config spandrel detects and builds (it does not detect them all)
        cls, kwargs, multiple = FAMILIES[family](r)
        sd = _state_dict(cls, seed, **kwargs)
        try:
            MAIN_REGISTRY.load(dict(sd))
            break
        except UnsupportedModelError:
            continue
    torch.manual_seed(seed)
    for h, w in ((2 * multiple, 2 * multiple), (2 * multiple - 3, 2 * multiple - 5)):
        desc, out, expected = _outputs(sd, torch.rand(1, 3, h, w), multiple if family == "DRCT" else 0)
        assert getattr(desc, "srt_info", None) is not None, f"{kwargs}: {desc.srt_fallback}"
        assert desc.srt_info.family.startswith(family)
        assert out.shape == expected.shape, kwargs
        assert max_abs(out, expected) <= 1e-4, kwargs
