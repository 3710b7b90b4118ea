"""The logic behind the Compare node: aligning inputs, comparison images, outputs and the report."""

from __future__ import annotations

import math
import re

import pytest
import torch

from srt.engine.comparison import (
    MODES,
    CompareInputError,
    align_inputs,
    compare,
    difference_heatmap,
    hot_colormap,
    side_by_side,
    split_view,
)
from srt.engine.metrics import measure


def frames(count: int, height: int = 24, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, height, width, 3, generator=torch.Generator().manual_seed(seed))


def test_shorter_batch_repeats_its_last_frame():
    a, b = frames(4), frames(2, seed=1)
    aligned = align_inputs(a, b)
    assert aligned.b.shape == (4, 24, 32, 3)
    assert torch.equal(aligned.b[:2], b)
    assert torch.equal(aligned.b[2], b[1]) and torch.equal(aligned.b[3], b[1])
    assert torch.equal(aligned.a, a)
    assert aligned.notes == ("image_b has 2 frame(s): its last frame is repeated to make 4",)


def test_shorter_a_and_reference_are_extended_too():
    aligned = align_inputs(frames(1), frames(3, seed=1), frames(2, seed=2))
    assert aligned.a.shape[0] == aligned.b.shape[0] == aligned.reference.shape[0] == 3
    assert torch.equal(aligned.reference[2], aligned.reference[1])
    assert len(aligned.notes) == 2


def test_size_mismatch_is_resized_to_image_a_with_a_note():
    a, b = frames(1, 48, 64), frames(1, 24, 32, seed=1)
    aligned = align_inputs(a, b)
    assert aligned.b.shape == (1, 48, 64, 3)
    assert 0.0 <= aligned.b.min() and aligned.b.max() <= 1.0
    assert "image_b is 32x24: resized (bicubic) to 64x48 to match image_a" in aligned.notes[0]
    result = compare(a, b, mode="side_by_side")
    assert result.image.shape == (1, 48, 128, 3)
    assert math.isfinite(result.psnr) and math.isfinite(result.ssim)


def test_size_follows_the_reference_when_given():
    a, b, ref = frames(2, 48, 64), frames(2, 40, 40, seed=1), frames(2, 24, 32, seed=2)
    result = compare(a, b, ref, mode="split")
    assert result.aligned.a.shape == result.aligned.b.shape == (2, 24, 32, 3)
    assert result.image.shape == (2, 24, 32, 3)
    assert sum("to match reference" in note for note in result.aligned.notes) == 2


def test_alpha_and_gray_inputs_become_rgb():
    rgba, gray = torch.rand(1, 16, 16, 4), torch.rand(1, 16, 16, 1)
    aligned = align_inputs(rgba, gray)
    assert aligned.a.shape == aligned.b.shape == (1, 16, 16, 3)
    assert torch.equal(aligned.a, rgba[..., :3])
    assert torch.equal(aligned.b[..., 2], gray[..., 0])
    assert aligned.notes == ("image_a: alpha channel ignored", "image_b: grayscale, repeated to RGB")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.rand(0, 8, 8, 3), "non-empty IMAGE batch"),
        (torch.rand(8, 8), "non-empty IMAGE batch"),
        (torch.rand(1, 8, 8, 2), "2 channels"),
    ],
)
def test_bad_inputs_name_the_input(bad, message):
    with pytest.raises(CompareInputError, match=message):
        compare(frames(1), bad)


def test_bad_options_are_refused():
    with pytest.raises(CompareInputError, match="mode"):
        compare(frames(1), frames(1), mode="overlay")  # type: ignore[arg-type]
    with pytest.raises(CompareInputError, match="channels"):
        compare(frames(1), frames(1), channels="lab")  # type: ignore[arg-type]


def test_side_by_side_places_panels_left_to_right():
    a, b, ref = frames(2), frames(2, seed=1), frames(2, seed=2)
    image = side_by_side(a, b, ref)
    assert image.shape == (2, 24, 96, 3)
    assert torch.equal(image[:, :, 32:64], b)
    assert compare(a, b, ref).image.shape == (2, 24, 96, 3)
    assert compare(a, b).image.shape == (2, 24, 64, 3)


def test_split_shows_a_left_b_right_and_a_line():
    a, b = torch.zeros(1, 10, 40, 3), torch.full((1, 10, 40, 3), 0.5)
    image = split_view(a, b)
    assert torch.equal(image[:, :, :19], a[:, :, :19])
    assert torch.equal(image[:, :, 21:], b[:, :, 21:])
    assert (image[:, :, 20] == 1.0).all()
    assert image.shape == a.shape


def test_difference_heatmap_amplifies_the_error():
    target = torch.full((1, 4, 4, 3), 0.5)
    assert difference_heatmap(target, target, 8.0).abs().max() == 0.0  # identical: black
    test = target + 0.02
    dim, bright = difference_heatmap(test, target, 1.0), difference_heatmap(test, target, 20.0)
    assert bright.sum() > dim.sum()
    assert torch.allclose(hot_colormap(torch.tensor([0.0, 1.0])), torch.tensor([[0.0, 0, 0], [1.0, 1, 1]]))


def test_difference_is_against_the_reference_when_given():
    a, b, ref = frames(1), frames(1, seed=1), frames(1, seed=2)
    with_ref = compare(a, b, ref, mode="difference", gain=2.0).image
    assert torch.allclose(with_ref, difference_heatmap(b, ref, 2.0))
    assert torch.allclose(compare(a, b, mode="difference", gain=2.0).image, difference_heatmap(b, a, 2.0))


def test_outputs_are_b_against_reference_or_against_a():
    a, b, ref = frames(3), frames(3, seed=1), frames(3, seed=2)
    with_ref = compare(a, b, ref, channels="y", border=2)
    expected = measure(b, ref, "y", 2)
    assert with_ref.psnr == pytest.approx(expected.mean_psnr)
    assert with_ref.ssim == pytest.approx(expected.mean_ssim)
    assert list(with_ref.scores) == ["A vs reference", "B vs reference"]
    assert with_ref.scores["A vs reference"] == measure(a, ref, "y", 2)
    without = compare(a, b, channels="rgb")
    assert list(without.scores) == ["B vs A"]
    assert without.psnr == pytest.approx(measure(b, a, "rgb").mean_psnr)
    assert without.other_scores["B vs A"] == measure(b, a, "y")


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_an_image_batch_in_range(mode):
    result = compare(frames(2), frames(1, seed=1), frames(2, 12, 16, seed=2), mode=mode)
    assert result.image.ndim == 4 and result.image.shape[0] == 2 and result.image.shape[-1] == 3
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0


def test_report_lists_every_frame_and_the_mean_with_fixed_decimals():
    a, b, ref = frames(2), frames(2, seed=1), frames(2, seed=2)
    result = compare(a, b, ref, channels="y", border=1)
    report = result.report()
    lines = report.splitlines()
    assert lines[0] == "2 frame(s), 32x24, Y channel (BT.601), border crop 1, 8-bit values"
    a_scores, b_scores = result.scores.values()
    for i, row in enumerate(["1", "2"]):
        line = next(line for line in lines[1:] if line.startswith(f"{row} "))
        numbers = line.split()[1:]
        assert numbers == [
            f"{a_scores.psnr[i]:.2f}",
            f"{a_scores.ssim[i]:.4f}",
            f"{b_scores.psnr[i]:.2f}",
            f"{b_scores.ssim[i]:.4f}",
        ]
    mean = next(line for line in lines if line.startswith("mean "))
    assert mean.split()[1:] == [
        f"{a_scores.mean_psnr:.2f}",
        f"{a_scores.mean_ssim:.4f}",
        f"{b_scores.mean_psnr:.2f}",
        f"{b_scores.mean_ssim:.4f}",
    ]
    assert any(line.startswith("mean RGB") for line in lines)
    assert "psnr/ssim outputs: B vs reference" in report
    assert result.summary() == [
        f"A vs reference: {a_scores.mean_psnr:.2f} dB, SSIM {a_scores.mean_ssim:.4f}",
        f"B vs reference: {b_scores.mean_psnr:.2f} dB, SSIM {b_scores.mean_ssim:.4f}",
    ]


def test_report_carries_the_notes_and_identical_images_read_inf():
    a = frames(2)
    result = compare(a, a[:1])
    report = result.report()
    assert re.search(r"^note: image_b has 1 frame\(s\)", report, flags=re.MULTILINE)
    first = next(line for line in report.splitlines()[1:] if line.startswith("1 "))
    assert first.split()[1:] == ["inf", "1.0000"]
    assert math.isinf(compare(a, a).psnr)
