"""What the engine asks of our models (working set, tile multiple, caches), for every family.

The engine names no family: it calls ``working_set_per_pixel``, ``preferred_tile_multiple`` and
``release_caches`` on the model, which estimates from its actual config.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from model_helpers import run
from tiny_models import TINY

from srt.arch.atd import ATD, ATDConfig
from srt.arch.common.model import SRModel
from srt.arch.dat import DAT, DATConfig
from srt.arch.drct import DRCT, DRCTConfig
from srt.arch.hat import HAT, HATConfig
from srt.arch.rgt import RGT, RGTConfig
from srt.arch.rgt_nhs2828 import NHS2828RGT, NHS2828Config
from srt.arch.swinir import SwinIR, SwinIRConfig
from srt.engine.memory import elements_per_pixel, preferred_multiple

# Official configs and the estimates (elements per input pixel) the engine used before the models
# estimated themselves, at tiles of 64, 256 and 512 px: moving the formula changed no number.
OFFICIAL = [
    (lambda: RGT(RGTConfig(scale=2)), (5744, 5744, 14960), 32),
    (lambda: RGT(RGTConfig(depths=(6,) * 6, num_heads=(6,) * 6, scale=4)), (7280, 7280, 16496), 32),
    (lambda: DRCT(DRCTConfig(scale=4)), (7440, 7440, 7440), 16),
    (lambda: DRCT(DRCTConfig(num_heads=(6,) * 12, scale=2)), (5904, 5904, 5904), 16),
    (lambda: ATD(ATDConfig(scale=3)), (11352, 11352, 11352), 16),
    (
        lambda: ATD(
            ATDConfig(
                embed_dim=48, depths=(6,) * 4, num_heads=(4,) * 4, category_size=128, num_tokens=64,
                reducted_dim=8, convffn_kernel_size=7, mlp_ratio=1.0, upsampler="pixelshuffledirect",
            )
        ),
        (6112, 6112, 6112),
        16,
    ),
]  # fmt: skip


def _descriptor(model: torch.nn.Module, scale: int = 2):
    return SimpleNamespace(model=model, scale=scale, output_channels=3)


@pytest.mark.parametrize(("build", "estimates", "multiple"), OFFICIAL)
def test_official_estimates_are_unchanged(build, estimates, multiple):
    with torch.device("meta"):
        model = build()
    assert [model.working_set_per_pixel(t, t) for t in (64, 256, 512)] == list(estimates)
    assert model.preferred_tile_multiple() == multiple
    desc = _descriptor(model)
    assert elements_per_pixel(desc, 512, 512) == estimates[-1] and preferred_multiple(desc) == multiple


# Official configs of the families that estimated themselves from the start (no engine-era number to
# keep): the window side the engine rounds tiles to, and an embed width to vary.
WINDOWED = {
    "HAT": (HAT, HATConfig, {}, 16),  # HAT x4: 16 px windows (OCAB's 24 px key windows overlap them)
    "HAT-S": (HAT, HATConfig, dict(embed_dim=144, compress_ratio=24, squeeze_factor=24), 16),
    "HAT-L": (HAT, HATConfig, dict(depths=(6,) * 12, num_heads=(6,) * 12, scale=2), 16),
    "SwinIR-M": (SwinIR, SwinIRConfig, dict(scale=2), 8),
    "SwinIR-S": (
        SwinIR,
        SwinIRConfig,
        dict(embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, upsampler="pixelshuffledirect", scale=2),
        8,
    ),
    "SwinIR-M real-world": (SwinIR, SwinIRConfig, dict(upsampler="nearest+conv"), 8),
    "SwinIR-M JPEG": (SwinIR, SwinIRConfig, dict(window_size=7, upsampler="", img_range=255.0, scale=1), 7),
    "DAT": (DAT, DATConfig, {}, 32),  # 8 x 32 and 32 x 8 windows: both fit a multiple of 32
    "DAT-S": (DAT, DATConfig, dict(mlp_ratio=2.0, split_size=(8, 16)), 16),
    "DAT-light": (
        DAT,
        DATConfig,
        dict(
            embed_dim=60, depths=(18,), num_heads=(6,), mlp_ratio=2.0, resi_connection="3conv",
            upsampler="pixelshuffledirect",
        ),
        32,
    ),
}  # fmt: skip


def _official(name: str, **changes) -> SRModel:
    cls, config_cls, kwargs, _ = WINDOWED[name]
    with torch.device("meta"):
        return cls(config_cls(**{**kwargs, **changes}))


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_windowed_families_estimate_themselves(name):
    """Fixed windows: the estimate does not grow with the tile, and the engine uses it as is."""
    model = _official(name)
    assert model.config.variant == name
    estimates = {model.working_set_per_pixel(t, t) for t in (64, 256, 512, 1024)}
    assert len(estimates) == 1 and estimates.pop() > 0
    assert model.working_set_per_pixel(64, 1024) == model.working_set_per_pixel(64, 64)
    desc = _descriptor(model, model.config.scale)
    for tile in (64, 512):
        assert elements_per_pixel(desc, tile, tile) == model.working_set_per_pixel(tile, tile)
    assert model.preferred_tile_multiple() == preferred_multiple(desc) == WINDOWED[name][-1]


@pytest.mark.parametrize("name", ["HAT", "SwinIR-M", "SwinIR-M JPEG", "DAT", "DAT-light"])
def test_windowed_estimate_follows_the_embed_width(name):
    narrow, wide = (_official(name, embed_dim=dim) for dim in (60, 240))
    for tile in (64, 512):
        assert narrow.working_set_per_pixel(tile, tile) < wide.working_set_per_pixel(tile, tile)
    assert elements_per_pixel(_descriptor(narrow), 256, 256) < elements_per_pixel(_descriptor(wide), 256, 256)


def test_hat_estimate_counts_the_overlapping_window_keys():
    """OCAB's queries attend 24 x 24 px key windows (16 px widened by 8), not the HAB's 16 x 16;
    its keys and values are copied into those widened windows (2.25 times the tokens)."""
    overlapping, plain = _official("HAT"), _official("HAT", overlap_ratio=0.0)
    assert overlapping.config.overlap_window == 24 and plain.config.overlap_window == 16
    heads, dim = max(overlapping.config.num_heads), overlapping.config.embed_dim
    assert overlapping.working_set_per_pixel(64, 64) - plain.working_set_per_pixel(64, 64) == (
        2 * heads * (24**2 - 16**2) + 2 * dim * (2.25 - 1)
    )


def test_swinir_estimate_counts_the_window_keys():
    big, small = _official("SwinIR-M"), _official("SwinIR-M", window_size=7)
    assert big.working_set_per_pixel(64, 64) - small.working_set_per_pixel(64, 64) == 2 * 6 * (8**2 - 7**2)
    assert small.preferred_tile_multiple() == 7


def test_dat_estimate_counts_the_rectangle_window_keys():
    """Each query attends one 8 x 32 (or 32 x 8) window: 256 keys, twice DAT-S's 8 x 16."""
    wide, narrow = _official("DAT"), _official("DAT", split_size=(8, 16))
    assert wide.working_set_per_pixel(64, 64) - narrow.working_set_per_pixel(64, 64) == 2 * 6 * (256 - 128)
    assert _official("DAT", split_size=(16, 4)).preferred_tile_multiple() == 16


def test_unshuffling_swinir_estimates_per_input_pixel():
    """A SwinIR that pixel-unshuffles its input (DiffBIR's restorer) runs 64 times fewer tokens than
    pixels and pads to whole windows of unshuffled tokens (8 x 8 px each)."""
    plain = _official("SwinIR-M", scale=8, upsampler="nearest+conv")
    unshuffled = _official("SwinIR-M", scale=1, unshuffle=8, upsampler="nearest+conv")
    assert unshuffled.working_set_per_pixel(512, 512) == plain.working_set_per_pixel(512, 512) / 64
    assert unshuffled.preferred_tile_multiple() == 64


def test_nhs2828_estimate_follows_its_real_width():
    """The engine used to read a width of 180 for every nhs2828 model (that family calls it ``dim``)."""
    with torch.device("meta"):
        narrow, wide = (NHS2828RGT(NHS2828Config(embed_dim=dim)) for dim in (48, 180))
    for tile in (64, 128, 512):
        assert narrow.working_set_per_pixel(tile, tile) < wide.working_set_per_pixel(tile, tile)
    assert elements_per_pixel(_descriptor(narrow), 256, 256) < elements_per_pixel(_descriptor(wide), 256, 256)
    assert narrow.preferred_tile_multiple() == 32  # its fixed 8 x 32 window


def test_nhs2828_estimate_counts_the_recursive_attention_keys():
    """RG-SA reduces a 128 px tile once (32 x 32 = 1024 keys), more than the 8 x 32 window."""
    with torch.device("meta"):
        model = NHS2828RGT()
    per_key = 2 * max(model.config.num_heads)
    assert model.working_set_per_pixel(128, 128) - model.working_set_per_pixel(64, 64) == per_key * (
        1024 - 256
    )


def test_other_models_get_the_generic_rule():
    plain = _descriptor(torch.nn.Conv2d(3, 3, 3), scale=4)
    assert elements_per_pixel(plain, 128, 128) == max(384 * 3 * 4, 2 * 64 * 16)
    assert preferred_multiple(plain) == 8


@pytest.fixture(params=sorted(TINY), ids=str)
def tiny(request) -> SRModel:
    torch.manual_seed(0)
    return TINY[request.param]().eval()


def test_release_caches_empties_every_geometry_cache(tiny):
    run(tiny, torch.rand(1, 3, 20, 24))
    assert len(tiny.geometry_cache) > 0
    tiny.release_caches()
    assert len(tiny.geometry_cache) == 0


@pytest.mark.parametrize(
    "move",
    [
        lambda m: m.to(torch.float64),
        lambda m: m.float(),
        lambda m: m.cpu(),
        lambda m: m.to("cpu"),
        lambda m: m.half(),
        lambda m: m.to(dtype=torch.bfloat16),
    ],
    ids=["to(float64)", "float()", "cpu()", "to('cpu')", "half()", "to(dtype=bf16)"],
)
def test_moving_or_converting_the_module_empties_its_caches(tiny, move):
    """ComfyUI moves models to the offload device by itself: no cached tensor may stay behind."""
    run(tiny, torch.rand(1, 3, 20, 24))
    assert len(tiny.geometry_cache) > 0
    assert move(tiny) is tiny
    assert len(tiny.geometry_cache) == 0


def test_cached_geometry_is_reused_and_rebuilt_after_release(tiny):
    x = torch.rand(1, 3, 20, 24)
    first = run(tiny, x)
    entries = len(tiny.geometry_cache)
    assert torch.equal(run(tiny, x), first) and len(tiny.geometry_cache) == entries
    tiny.release_caches()
    assert torch.equal(run(tiny, x), first) and len(tiny.geometry_cache) == entries
