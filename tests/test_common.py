"""Shared geometry helpers against naive, loop-based definitions."""

from __future__ import annotations

import itertools

import pytest
import torch

from srt.arch.common.cache import GeometryCache
from srt.arch.common.config import ModelConfig
from srt.arch.common.model import SRModel
from srt.arch.common.position import relative_position_index
from srt.arch.common.windows import (
    MASKED_LOGIT,
    shift_window_mask,
    window_partition,
    window_reverse,
    windowed_attention,
)


def naive_shift_mask(h, w, wh, ww, sh, sw):
    """Swin's definition: label 9 regions by slices, compare labels inside each window."""
    labels = torch.zeros(h, w)
    cnt = 0
    for hs in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
        for ws in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
            labels[hs, ws] = cnt
            cnt += 1
    masks = []
    for i in range(0, h, wh):
        for j in range(0, w, ww):
            lab = labels[i : i + wh, j : j + ww].flatten()
            m = (lab[:, None] != lab[None, :]).float() * MASKED_LOGIT
            masks.append(m)
    return torch.stack(masks)


@pytest.mark.parametrize(
    ("h", "w", "wh", "ww"), [(16, 16, 8, 8), (32, 64, 8, 32), (64, 32, 32, 8), (48, 48, 16, 16)]
)
def test_shift_mask_matches_region_definition(h, w, wh, ww):
    got = shift_window_mask(h, w, (wh, ww), (wh // 2, ww // 2), torch.device("cpu"), torch.float32)
    assert torch.equal(got, naive_shift_mask(h, w, wh, ww, wh // 2, ww // 2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_shift_mask_is_built_in_compute_dtype(dtype):
    m = shift_window_mask(32, 32, (16, 16), (8, 8), torch.device("cpu"), dtype)
    assert m.dtype == dtype and torch.isfinite(m).all()


@pytest.mark.parametrize(("wh", "ww"), [(8, 8), (8, 32), (4, 2)])
def test_relative_position_index_matches_pairwise_offsets(wh, ww):
    coords = list(itertools.product(range(wh), range(ww)))
    expected = torch.tensor(
        [[(a[0] - b[0] + wh - 1) * (2 * ww - 1) + (a[1] - b[1] + ww - 1) for b in coords] for a in coords]
    )
    assert torch.equal(relative_position_index(wh, ww), expected)


def test_window_partition_roundtrip_and_order():
    x = torch.arange(2 * 8 * 12 * 3).float().reshape(2, 8, 12, 3)
    win = window_partition(x, 4, 6)
    assert win.shape == (2 * 2 * 2, 24, 3)
    assert torch.equal(win[1, 0], x[0, 0, 6])  # second window of the first image starts at column 6
    assert torch.equal(window_reverse(win, 4, 6, 8, 12), x)


def test_windowed_attention_equals_explicit_softmax_with_a_shared_bias():
    torch.manual_seed(0)
    b, nw, heads, n, d = 2, 3, 2, 5, 4
    q, k, v = (torch.randn(b * nw, heads, n, d) for _ in range(3))
    bias = torch.randn(1, heads, n, n)
    logits = (q @ k.transpose(-2, -1)) * 0.5 + bias
    ref = logits.softmax(-1) @ v
    torch.testing.assert_close(windowed_attention(q, k, v, bias, scale=0.5), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(windowed_attention(q, k, v, bias[0], scale=0.5), ref, atol=1e-5, rtol=1e-5)


def test_geometry_cache_is_bounded_and_cleared_on_load():
    cache = GeometryCache(max_entries=2)
    calls = []
    for key in ["a", "b", "a", "c", "b"]:
        cache.get(key, lambda key=key: calls.append(key) or torch.zeros(1))
    assert calls == ["a", "b", "c", "b"] and len(cache) == 2
    model = SRModel(ModelConfig()).eval()  # training with gradients rebuilds geometry on every call
    model.proj = torch.nn.Linear(2, 2)
    model.cached_geometry("x", torch.zeros(1), lambda: torch.zeros(1))
    assert len(model.geometry_cache) == 1
    model.load_state_dict(model.state_dict())
    assert len(model.geometry_cache) == 0
