"""Tile geometry and blending: equal aligned tiles, flush edges, weights that sum to one,
tiled == untiled for a per-pixel model, and no seams for a real convolutional model."""

from __future__ import annotations

import itertools

import pytest
import torch
from engine_models import compact, per_pixel, untiled

from srt.engine.runner import Host, Settings, upscale
from srt.engine.tiling import (
    SizeRule,
    Tile,
    axis_starts,
    axis_weights,
    count_tiles,
    pad_frame,
    plan_tiles,
    split_tile,
    tile_shape,
)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    list(itertools.product([1, 7, 64, 65, 100, 129, 250, 513], [16, 64, 96], [0, 8, 15, 32])),
)
def test_axis_starts_equal_tiles_flush_and_overlapping(length, tile, overlap):
    starts = axis_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length, "last tile must end flush with the edge"
    steps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(s > 0 for s in steps), "tiles must advance"
    assert max(steps) - min(steps) <= 1, "tiles must be spread evenly (no sliver at the end)"
    ov = min(overlap, tile - 1)
    assert all(tile - s >= ov for s in steps), "neighbours must overlap by at least the overlap"
    # no more tiles than needed: one fewer could not cover with that overlap
    n = len(starts)
    assert n == 2 or (n - 2) * (tile - ov) + tile < length


@pytest.mark.parametrize(
    ("h", "w", "tile", "rule", "expected"),
    [
        (300, 200, 128, SizeRule(), (128, 128)),
        (300, 200, 100, SizeRule(multiple_of=16), (96, 96)),  # aligned down to the rule
        (50, 300, 128, SizeRule(multiple_of=16), (64, 128)),  # short axis: aligned up, padded
        (50, 300, 128, SizeRule(multiple_of=16, square=True), (128, 128)),
        (10, 12, 64, SizeRule(minimum=32, multiple_of=8), (32, 32)),
        (5, 5, 3, SizeRule(multiple_of=8), (8, 8)),  # a tile is never below one alignment unit
    ],
)
def test_tile_shape_is_aligned(h, w, tile, rule, expected):
    th, tw = tile_shape(h, w, tile, rule)
    assert (th, tw) == expected
    for s in (th, tw):
        assert s % rule.multiple_of == 0 and s >= rule.minimum


@pytest.mark.parametrize(
    ("h", "w", "th", "tw", "overlap", "scale"),
    [(100, 130, 32, 48, 8, 2), (64, 200, 64, 40, 16, 3), (97, 61, 24, 24, 5, 1), (129, 129, 64, 64, 32, 4)],
)
def test_weights_sum_to_one_and_cover_every_pixel(h, w, th, tw, overlap, scale):
    tiles = plan_tiles(h, w, th, tw, overlap, scale)
    assert len(tiles) == count_tiles(h, w, th, tw, overlap)
    total = torch.zeros(h * scale, w * scale, dtype=torch.float64)
    count = torch.zeros_like(total)
    for t in tiles:
        assert (t.h, t.w) == (th, tw), "all tiles have the same shape"
        wt = t.weight().double()
        assert wt.min() >= 0
        total[t.y * scale : (t.y + t.h) * scale, t.x * scale : (t.x + t.w) * scale] += wt
        count[t.y * scale : (t.y + t.h) * scale, t.x * scale : (t.x + t.w) * scale] += (wt > 0).double()
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)
    assert count.min() >= 1, "every output pixel gets weight from some tile"


def test_outer_quarter_of_each_overlap_gets_no_weight():
    starts = axis_starts(100, 40, 16)
    weights = axis_weights(starts, 40, 1)
    for (a, b), wa, wb in zip(itertools.pairwise(starts), weights, weights[1:], strict=False):
        overlap = a + 40 - b
        margin = overlap // 4
        assert torch.all(wa[40 - margin :] == 0), "tile edge pixels (no context) must not be used"
        assert torch.all(wb[:margin] == 0)


def test_split_tile_keeps_the_weight():
    tiles = plan_tiles(150, 150, 64, 64, 16, 2)
    t = tiles[4]  # an interior tile with ramps on every side
    total = torch.zeros(t.h * 2, t.w * 2, dtype=torch.float64)
    for s in split_tile(t, 32, 32, 8, 2):
        assert (s.h, s.w) == (32, 32)
        total[(s.y - t.y) * 2 : (s.y - t.y + s.h) * 2, (s.x - t.x) * 2 : (s.x - t.x + s.w) * 2] += s.weight()
    torch.testing.assert_close(total, t.weight().double(), atol=1e-6, rtol=0)


def test_pad_frame_reflects_or_replicates():
    frame = torch.arange(12.0).view(1, 3, 4)
    padded = pad_frame(frame, 5, 6)
    assert padded.shape == (1, 5, 6)
    assert torch.equal(padded[0, 3, :4], frame[0, 1]) and torch.equal(
        padded[0, :3, 4], frame[0, :, 2]
    )  # reflect
    tiny = pad_frame(torch.ones(1, 2, 2), 8, 8)  # pad larger than the image: replicate
    assert tiny.shape == (1, 8, 8) and torch.all(tiny == 1)


def run(desc, image, **kw):
    return upscale(desc, image, Settings(**kw), Host())


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "multiple_of", "scale"),
    [
        (70, 90, 32, 8, 1, 2),
        (70, 90, 32, 8, 16, 3),
        (33, 130, 48, 12, 8, 2),
        (20, 20, 64, 8, 16, 4),
        (64, 64, 64, 0, 1, 2),
    ],
)
def test_tiled_equals_untiled_for_a_per_pixel_model(h, w, tile, overlap, multiple_of, scale):
    torch.manual_seed(0)
    desc = per_pixel(scale, multiple_of=multiple_of)
    image = torch.rand(2, h, w, 3)
    result = run(desc, image, tile=tile, overlap=overlap)
    assert result.image.shape == (2, h * scale, w * scale, 3) and result.image.dtype == torch.float32
    th, tw = result.report.tile
    assert set(desc.model.calls) == {(1, 3, th, tw)}, "all tiles share one aligned shape"
    assert th % multiple_of == 0 and tw % multiple_of == 0
    with torch.inference_mode():
        ref = untiled(desc, image)
    torch.testing.assert_close(result.image, ref, atol=1e-6, rtol=0)  # a few fp32 ulps


def test_small_image_runs_in_one_padded_pass_identical_to_the_model():
    desc = per_pixel(2, multiple_of=16)
    image = torch.rand(1, 21, 13, 3)
    result = run(desc, image, tile=256, overlap=32)
    assert desc.model.calls == [(1, 3, 32, 16)], "one call on the reflect-padded, aligned frame"
    with torch.inference_mode():
        ref = untiled(desc, image)
    assert torch.equal(result.image, ref), "a single tile must reproduce the model exactly"


def test_conv_model_tiled_matches_untiled_when_overlap_covers_the_receptive_field():
    # Compact(num_conv=4): 6 convs 3x3 -> receptive radius 6 px; overlap 32 leaves an 8 px margin
    # that gets no weight, so every blended pixel saw its full context (the same convolutions on
    # different sizes differ by ~1e-5 with these large random weights).
    desc = compact(scale=2, num_conv=4, std=0.2)
    torch.manual_seed(0)
    image = torch.rand(1, 90, 110, 3)
    with torch.inference_mode():
        ref = untiled(desc, image)
    result = run(desc, image, tile=64, overlap=32)
    assert result.report.tiles_run == 6
    torch.testing.assert_close(result.image, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("tile", "overlap"), [(32, 8), (48, 16)])
def test_small_tiles_closer_to_untiled_than_core_tiling(crop, tile, overlap):
    """Small tiles: no seams, and closer to the untiled output than ComfyUI core's tiling."""
    from srt.benchmarks.bench_tiling import core_tiled_scale, seam_score

    desc = compact(scale=2, num_conv=8, std=0.08)
    image = crop("astronaut", 60, 140, 96, 96).permute(0, 2, 3, 1).contiguous()
    x = image.permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        ref = untiled(desc, image)
        core = core_tiled_scale(x, desc, tile, overlap, 2).clamp(0, 1).permute(0, 2, 3, 1)
    ours = run(desc, image, tile=tile, overlap=overlap).image
    err_ours, err_core = (ours - ref).abs(), (core - ref).abs()
    assert err_ours.mean() < 0.5 * err_core.mean(), (err_ours.mean(), err_core.mean())
    assert seam_score(ours[0], ref[0]) < 0.5 * seam_score(core[0], ref[0])
    assert seam_score(ours[0], ref[0]) < 2e-3, "a visible line along a tile boundary"


def test_split_tile_weights_stay_on_the_tiles_device():
    """Sub-tile weights are made where the tile's weights are (the blend device, e.g. a GPU)."""
    t = plan_tiles(150, 150, 64, 64, 16, 2)[4]
    on_meta = Tile(t.y, t.x, t.h, t.w, t.wy.to("meta"), t.wx.to("meta"))
    subs = split_tile(on_meta, 32, 32, 8, 2)
    assert len(subs) == len(split_tile(t, 32, 32, 8, 2)) > 1
    assert all(s.wy.device.type == "meta" and s.wx.device.type == "meta" for s in subs)
