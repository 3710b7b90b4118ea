"""What the engine asks of our models (working set, tile multiple, caches), for every family.

The engine names no family: it calls ``working_set_per_pixel``, ``preferred_tile_multiple`` and
``release_caches`` on the model, which estimates from its actual config.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from model_helpers import run

from srt.arch.atd import ATD, ATDConfig
from srt.arch.common.model import SRModel
from srt.arch.drct import DRCT, DRCTConfig
from srt.arch.rgt import RGT, RGTConfig
from srt.arch.rgt_nhs2828 import NHS2828RGT, NHS2828Config
from srt.engine.memory import elements_per_pixel, preferred_multiple

# Tiny configs of every family: fast on the CPU, and every kind of cached geometry.
TINY = {
    "RGT": lambda: RGT(RGTConfig(embed_dim=64, depths=(2,), num_heads=(2,), split_size=(4, 8), scale=2)),
    "DRCT": lambda: DRCT(DRCTConfig(embed_dim=12, num_heads=(2,), window_size=4, gc=4, scale=2)),
    "ATD": lambda: ATD(
        ATDConfig(
            embed_dim=12,
            depths=(2,),
            num_heads=(2,),
            window_size=4,
            category_size=16,
            num_tokens=8,
            reducted_dim=4,
            scale=2,
        )
    ),
    "RGT_nhs2828": lambda: NHS2828RGT(
        NHS2828Config(embed_dim=12, depths=(1,), num_heads=(2,), pos_dim=2, mlp_ratio=1.0)
    ),
}

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
