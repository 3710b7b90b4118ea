"""Precision policy, weights that survive half-precision runs, and the NaN/inf fallback to fp32."""

from __future__ import annotations

import pytest
import torch
from engine_models import PerPixel, per_pixel, untiled, wrap

from srt.engine import compiled as compiled_module
from srt.engine.placement import LocalPlacement
from srt.engine.precision import choose_precision
from srt.engine.runner import Host, NonFiniteOutputError, Settings, upscale

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("requested", "device", "half", "bf16", "bf16_ok", "expected", "noted"),
    [
        ("auto", CPU, True, True, True, torch.float32, False),  # half on CPU: ~100x slower
        ("auto", CUDA, True, True, True, torch.bfloat16, False),
        ("auto", CUDA, True, True, False, torch.float16, False),  # pre-Ampere GPU
        ("auto", CUDA, True, False, True, torch.float16, False),
        ("auto", CUDA, False, True, True, torch.bfloat16, False),
        ("auto", CUDA, False, False, True, torch.float32, False),
        ("fp32", CUDA, True, True, True, torch.float32, False),
        ("bf16", CUDA, True, True, True, torch.bfloat16, False),
        ("fp16", CUDA, True, False, True, torch.float16, False),
        ("fp16", CUDA, False, True, True, torch.float32, True),  # not validated: fp32, and say so
        ("bf16", CPU, True, False, True, torch.float32, True),
        ("bf16", CPU, True, True, True, torch.bfloat16, False),  # explicit request on CPU is honoured
    ],
)
def test_choose_precision(requested, device, half, bf16, bf16_ok, expected, noted):
    choice = choose_precision(requested, device, half, bf16, bf16_ok=bf16_ok)
    assert choice.dtype == expected
    assert bool(choice.note) == noted
    if noted:
        assert requested in choice.note and "fp32" in choice.note


def test_choose_precision_rejects_unknown():
    with pytest.raises(ValueError, match="fp8"):
        choose_precision("fp8", CPU, True, True)


def test_local_placement_restores_the_original_weights():
    model = PerPixel()
    model.register_buffer("stat", torch.linspace(0, 1, 7) / 3)
    before = {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}
    placed = LocalPlacement(model, CPU, CPU)
    assert placed.module(torch.bfloat16) is model
    assert model.conv.weight.dtype == torch.bfloat16 and model.stat.dtype == torch.bfloat16
    placed.module(torch.float32)  # back to fp32 from the originals, not from rounded bf16
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k][1]), k
    placed.module(torch.float16)
    placed.done()
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32 and v.data_ptr() == before[k][0] and torch.equal(v, before[k][1]), k


def test_bf16_run_keeps_the_fp32_weights():
    desc = per_pixel(2)
    weights = {k: v.clone() for k, v in desc.model.state_dict().items()}
    image = torch.rand(1, 20, 24, 3)
    result = upscale(desc, image, Settings(tile=16, overlap=4, precision="bf16"), Host())
    assert result.report.dtype == torch.bfloat16
    assert result.image.dtype == torch.float32
    torch.testing.assert_close(result.image, untiled(desc, image), atol=2e-2, rtol=0)
    for k, v in desc.model.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, weights[k]), k


class OverflowsInHalf(PerPixel):
    """Per-pixel model that overflows (NaN, +inf) in half precision on tiles that start bright."""

    def forward(self, x):
        y = super().forward(x)
        if self.conv.weight.dtype != torch.float32 and x[0, 0, 0, 0] > 0.5:
            y = y.clone()
            y[:, :, :2] = float("nan")
            y[:, :, -1] = float("inf")  # spandrel's descriptor call would clamp this to 1
        return y


class AlwaysNaN(PerPixel):
    def forward(self, x):
        return super().forward(x) * float("nan")


def _bright_right(h: int = 32, w: int = 64, dark: float = 0.75) -> torch.Tensor:
    """0.2 on the left ``dark`` part of the width, 0.8 on the rest."""
    image = torch.full((1, h, w, 3), 0.2)
    image[:, :, int(w * dark) :] = 0.8
    return image


def test_nonfinite_tiles_are_recomputed_in_fp32_with_one_warning():
    desc = wrap(OverflowsInHalf(), 2)
    image = _bright_right()
    warnings: list[str] = []
    result = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp16"), Host(warn=warnings.append))
    assert result.report.nonfinite_tiles == 2  # the right column of a 2 x 4 grid
    assert result.report.fp32_from_tile == 0  # 2 of 8 tiles: redone one by one, the rest stays fp16
    assert len(warnings) == 1 and "NaN/inf" in warnings[0] and "fp32" in warnings[0]
    assert torch.isfinite(result.image).all()
    fp32 = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp32"), Host()).image
    right = slice(96, None)
    torch.testing.assert_close(result.image[:, :, right], fp32[:, :, right], atol=0, rtol=0)  # redone in fp32
    torch.testing.assert_close(result.image, fp32, atol=2e-3, rtol=0)
    assert not torch.equal(result.image[:, :, :96], fp32[:, :, :96])  # the rest ran in fp16
    assert desc.model.conv.weight.dtype == torch.float32


class RecordsDtypes(OverflowsInHalf):
    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def forward(self, x):
        self.dtypes.append(x.dtype)
        return super().forward(x)


def test_a_run_that_keeps_overflowing_switches_to_fp32_for_good():
    """Every tile overflows in fp16: after two the run continues in fp32 (no double work)."""
    model = RecordsDtypes()
    desc = wrap(model, 2)
    image = _bright_right(dark=0.0)
    warnings: list[str] = []
    result = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp16"), Host(warn=warnings.append))
    report = result.report
    assert (report.nonfinite_tiles, report.fp32_from_tile, report.tiles_run) == (2, 2, 8)
    assert model.dtypes == [torch.float16, torch.float32, torch.float16] + [torch.float32] * 7
    assert len(warnings) == 2 and "running the rest in fp32" in warnings[1]
    fp32 = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp32"), Host()).image
    torch.testing.assert_close(result.image, fp32, atol=0, rtol=0)
    assert desc.model.conv.weight.dtype == torch.float32


def test_nan_in_fp32_is_an_error_not_a_black_image():
    desc = wrap(AlwaysNaN(), 2)
    with pytest.raises(NonFiniteOutputError, match=r"NaN/inf even in fp32"):
        upscale(desc, torch.rand(1, 8, 8, 3), Settings(), Host())
    assert desc.model.conv.weight.dtype == torch.float32


def test_output_is_clamped_float32_on_the_output_device():
    desc = per_pixel(2)
    with torch.no_grad():
        desc.model.conv.weight.mul_(40)  # saturating sigmoid
        desc.model.conv.bias.fill_(0.0)
    image = torch.rand(2, 12, 12, 3) * 2 - 0.5  # out of range input too
    desc.model.forward = lambda x, m=desc.model: PerPixel.forward(m, x) * 3 - 1  # outputs in [-1, 2]
    result = upscale(desc, image, Settings(tile=8, overlap=2), Host(output_device=CPU))
    out = result.image
    assert out.dtype == torch.float32 and out.device == CPU
    assert out.min() == 0.0 and out.max() == 1.0


def test_a_late_nonfinite_tile_in_a_later_frame_is_found_and_redone():
    """After the first tiles, flags are read once per frame: a bad tile deep in frame 2 is still redone."""
    desc = wrap(OverflowsInHalf(), 2)
    image = torch.cat(
        [_bright_right(dark=1.0), _bright_right(dark=0.75)]
    )  # frame 1 dark, frame 2 bright right
    warnings: list[str] = []
    result = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp16"), Host(warn=warnings.append))
    assert result.report.nonfinite_tiles == 2 and result.report.fp32_from_tile == 0
    assert torch.isfinite(result.image).all() and len(warnings) == 1
    fp32 = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp32"), Host()).image
    torch.testing.assert_close(result.image[1, :, 96:], fp32[1, :, 96:], atol=0, rtol=0)


def test_compiled_path_gives_the_same_image_and_reports_its_cost():
    desc = per_pixel(2)
    image = torch.rand(1, 24, 24, 3)
    eager = upscale(desc, image, Settings(tile=16, overlap=4), Host()).image
    result = upscale(desc, image, Settings(tile=16, overlap=4, compile=True), Host(compile_backend="eager"))
    torch.testing.assert_close(result.image, eager, atol=1e-6, rtol=0)
    assert result.report.tiles_run == 4
    # the compiled path ran: the model class got a compiled forward for this backend, and its cost
    # (first compiled tile minus a steady one, engine/compiled.py) is a finite number of seconds
    assert (type(desc.model), "eager", None) in compiled_module._forwards
    assert result.report.compile.tiles == 3, "the first tile eager (geometry), the other three compiled"
    assert 0.0 <= result.report.compile_seconds < 60.0


def test_a_model_that_does_not_compile_runs_eagerly_with_one_warning():
    def broken_backend(graph, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    desc = per_pixel(2)
    image = torch.rand(1, 24, 24, 3)
    warnings: list[str] = []
    host = Host(compile_backend=broken_backend, warn=warnings.append)
    result = upscale(desc, image, Settings(tile=16, overlap=4, compile=True), host)
    eager = upscale(desc, image, Settings(tile=16, overlap=4), Host()).image
    torch.testing.assert_close(result.image, eager, atol=0, rtol=0)
    assert len(warnings) == 1 and "torch.compile failed" in warnings[0]


class CountingPlacement(LocalPlacement):
    """A local placement that records every dtype the run asks for."""

    asked: list[torch.dtype]

    def module(self, dtype):
        self.asked.append(dtype)
        return super().module(dtype)


def test_a_frames_nonfinite_tiles_are_redone_under_one_fp32_placement():
    """Four tiles of each frame overflow in fp16: the weights go to fp32 and back once per frame."""
    asked: list[torch.dtype] = []

    def placement(desc, memory_required):
        p = CountingPlacement(desc.model, CPU, CPU)
        p.asked = asked
        return p

    desc = wrap(OverflowsInHalf(), 2)
    image = torch.cat(
        [_bright_right(32, 96, dark=2 / 3)] * 2
    )  # per frame 2 x 6 tiles, the last 2 columns bright
    result = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp16"), Host(placement=placement))
    assert result.report.nonfinite_tiles == 8 and result.report.fp32_from_tile == 0
    half, fp32 = torch.float16, torch.float32
    assert asked == [half] + [fp32, half] * 2, "one round trip to fp32 per frame, not one per tile"
    reference = upscale(desc, image, Settings(tile=16, overlap=0, precision="fp32"), Host()).image
    torch.testing.assert_close(result.image[:, :, 128:], reference[:, :, 128:], atol=0, rtol=0)
