"""PSNR/SSIM frame by frame (issue 18, section 4): the Compare node used to turn the whole batch
into float64 at once (300 4K frames = 60 GB). Now the largest float64 tensor is one frame's, and
the scores are bit-identical to the whole-batch computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from srt.engine.comparison import compare
from srt.engine.metrics import measure, prepare, psnr, ssim

FRAMES, H, W = 5, 24, 20


def _batches():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(FRAMES, H, W, 3, generator=g)
    test = (target + 0.05 * torch.randn(FRAMES, H, W, 3, generator=g)).clamp(0, 1)
    test[2] = target[2]  # identical frame: PSNR inf, SSIM 1
    test[3] = 1.0 - target[3]  # far off
    return test, target


def _whole_batch(test, target, channels, border):
    """The computation before the fix: every frame of both batches in float64 at once."""
    x, y = prepare(test, channels, border), prepare(target, channels, border)
    return tuple(psnr(x, y).tolist()), tuple(ssim(x, y).tolist())


@pytest.mark.parametrize("channels", ["y", "rgb"])
@pytest.mark.parametrize("border", [0, 2])
def test_frame_by_frame_equals_the_whole_batch(channels, border):
    test, target = _batches()
    scores = measure(test, target, channels, border)
    old_psnr, old_ssim = _whole_batch(test, target, channels, border)
    assert scores.psnr == old_psnr and scores.ssim == old_ssim  # bit for bit
    assert math.isinf(scores.psnr[2]) and scores.ssim[2] == 1.0
    assert len(scores.psnr) == len(scores.ssim) == FRAMES


class LargestFloat64(TorchDispatchMode):
    """Records the element count of the largest float64 tensor any torch op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("frames", [1, 6])
def test_largest_float64_tensor_is_one_frames_whatever_the_batch(frames):
    """Through the whole Compare logic (A and B vs a reference, Y and RGB): the biggest float64
    tensor is SSIM's five planes of one frame (5 H W), never a batch (6 frames x 3 H W before)."""
    g = torch.Generator().manual_seed(1)
    a, b, ref = (torch.rand(frames, H, W, 3, generator=g) for _ in range(3))
    with LargestFloat64() as mode:
        result = compare(a, b, ref, mode="difference")
    assert len(result.scores["B vs reference"].psnr) == frames
    assert 3 * H * W <= mode.largest <= 5 * H * W
