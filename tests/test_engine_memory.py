"""Memory policy: auto tile size, out-of-memory back-off, bounded batch memory, progress and
interrupts between tiles."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from engine_models import PerPixel, per_pixel, untiled, wrap
from torch.profiler import ProfilerActivity, profile

from srt.arch.drct import DRCT, DRCTConfig
from srt.arch.rgt import RGT, RGTConfig
from srt.engine.memory import AUTO_TILE_MAX, AUTO_TILE_MIN, auto_tile_size, is_oom, looks_like_oom, tile_bytes
from srt.engine.runner import Host, Settings, upscale
from srt.engine.tiling import SizeRule, count_tiles

OOM = torch.cuda.OutOfMemoryError
GiB = 2**30


class OutOfMemoryAbove(PerPixel):
    """Raises the CUDA OOM error for tiles above ``limit`` pixels, from call ``after`` on."""

    def __init__(self, limit: int, after: int = 0, error: type[BaseException] = OOM) -> None:
        super().__init__(2)
        self.limit, self.after, self.error = limit, after, error
        self.done: list[tuple[int, ...]] = []

    def forward(self, x):
        if len(self.calls) >= self.after and x.shape[-1] * x.shape[-2] > self.limit:
            self.calls.append(tuple(x.shape))
            raise self.error("CUDA out of memory. Tried to allocate 20.00 GiB")
        y = super().forward(x)
        self.done.append(tuple(x.shape))
        return y


def _reference(desc, image):
    desc.model.limit = 10**9  # the untiled reference call fits
    return untiled(desc, image)


def test_oom_halves_the_tile_and_output_is_unchanged():
    desc = wrap(OutOfMemoryAbove(limit=32 * 32), 2)
    image = torch.rand(2, 100, 90, 3)
    warnings, progress = [], []
    result = upscale(
        desc,
        image,
        Settings(tile=64, overlap=8),
        Host(warn=warnings.append, progress=lambda d, t: progress.append((d, t))),
    )
    assert set(desc.model.done) == {(1, 3, 32, 32)}
    torch.testing.assert_close(result.image, _reference(desc, image), atol=1e-6, rtol=0)
    assert result.report.oom_backoffs == 1 and result.report.tile == (32, 32)
    assert any("out of memory" in w for w in warnings)
    assert [d for d, _ in progress] == list(range(1, result.report.tiles_run + 1)), (
        "one progress step per tile"
    )
    assert progress[-1][0] == progress[-1][1], "progress ends at its total"


def test_oom_continues_with_the_tiles_not_yet_done():
    desc = wrap(OutOfMemoryAbove(limit=32 * 32, after=2), 2)  # two 64 px tiles succeed, then OOM
    image = torch.rand(1, 100, 100, 3)
    result = upscale(desc, image, Settings(tile=64, overlap=8), Host())
    assert desc.model.done.count((1, 3, 64, 64)) == 2, "finished tiles are kept, not redone"
    # the two 64 px boxes left (the failed one and the last) are each done in 32 px sub-tiles
    assert desc.model.done.count((1, 3, 32, 32)) == 2 * count_tiles(64, 64, 32, 32, 8)
    assert result.report.oom_backoffs == 1
    torch.testing.assert_close(result.image, _reference(desc, image), atol=1e-6, rtol=0)


def test_oom_at_the_smallest_tile_raises_the_hosts_error_and_releases_the_model():
    desc = wrap(OutOfMemoryAbove(limit=0), 2)
    with pytest.raises(OOM):
        upscale(desc, torch.rand(1, 100, 100, 3), Settings(tile=128), Host())
    assert desc.model.conv.weight.device.type == "cpu" and desc.model.conv.weight.dtype == torch.float32


def test_catch_all_host_oom_type_only_catches_memory_errors():
    # comfy.model_management.OOM_EXCEPTION is plain Exception on builds without CUDA
    bug = wrap(OutOfMemoryAbove(limit=0, error=ValueError), 2)
    with pytest.raises(ValueError):
        upscale(bug, torch.rand(1, 64, 64, 3), Settings(tile=64), Host(oom_exceptions=(Exception,)))
    assert bug.model.calls == [(1, 3, 64, 64)], "a bug is not retried with smaller tiles"
    cpu_oom = wrap(OutOfMemoryAbove(limit=32 * 32, error=RuntimeError), 2)
    result = upscale(cpu_oom, torch.rand(1, 64, 64, 3), Settings(tile=64), Host(oom_exceptions=(Exception,)))
    assert result.report.oom_backoffs == 1


def test_oom_recognition():
    assert looks_like_oom(OOM("CUDA out of memory"))
    assert looks_like_oom(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")
    )
    assert looks_like_oom(MemoryError())
    assert not looks_like_oom(RuntimeError("shape mismatch"))
    assert is_oom(KeyError("x"), (KeyError,)) and not is_oom(KeyError("x"), (Exception,))


def _fake(model: torch.nn.Module | None = None, scale: int = 4):
    """A descriptor-like object around ``model`` (built on the meta device: no memory, no time)."""
    return SimpleNamespace(model=model, scale=scale, output_channels=3)


def test_auto_tile_size_follows_free_memory_and_model():
    rule = SizeRule(multiple_of=16)
    with torch.device("meta"):
        drct = _fake(DRCT(DRCTConfig(embed_dim=180, num_heads=(6,) * 6, window_size=16)))
        rgt = _fake(RGT(RGTConfig(embed_dim=180, num_heads=(6,) * 6, depths=(6,) * 6, split_size=(8, 32))))
    sizes = [
        auto_tile_size(drct, free, torch.float32, rule) for free in (0.5 * GiB, 2 * GiB, 8 * GiB, 64 * GiB)
    ]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert all(s % 16 == 0 and AUTO_TILE_MIN <= s <= AUTO_TILE_MAX for s in sizes)
    for free, size in zip((0.5 * GiB, 2 * GiB), sizes, strict=False):
        assert tile_bytes(drct, size, size, torch.float32) <= free, "the chosen tile fits the budget"
    conv_net = _fake()  # spandrel's zoo: ComfyUI core's rule of thumb
    assert auto_tile_size(conv_net, 2 * GiB, torch.float32, rule) > sizes[1], (
        "a lighter model gets bigger tiles"
    )
    assert auto_tile_size(rgt, 2 * GiB, torch.float32, rule) < auto_tile_size(
        conv_net, 2 * GiB, torch.float32, rule
    )
    assert auto_tile_size(drct, 2 * GiB, torch.bfloat16, rule) > sizes[1], (
        "half precision halves the working set"
    )
    assert auto_tile_size(drct, 64 * GiB, torch.float32, rule, frame=(100, 70)) == 112, (
        "never beyond the frame"
    )


def test_auto_tile_in_the_engine_uses_the_hosts_free_memory():
    image = torch.rand(1, 200, 200, 3)
    small = upscale(per_pixel(2), image, Settings(tile=0), Host(free_memory=lambda dev: 200 * 2**20))
    large = upscale(per_pixel(2), image, Settings(tile=0), Host(free_memory=lambda dev: 64 * GiB))
    assert small.report.tile[0] < large.report.tile[0] == 200
    assert small.report.tile[0] % 8 == 0, "auto tiles are compute-friendly multiples"
    torch.testing.assert_close(small.image, large.image, atol=1e-6, rtol=0)


def test_interrupt_between_tiles_stops_cleanly():
    class Interrupted(Exception):
        pass

    desc = per_pixel(2)
    seen = []

    def check():
        if len(seen) == 3:
            raise Interrupted
        seen.append(1)

    with pytest.raises(Interrupted):
        upscale(desc, torch.rand(2, 64, 64, 3), Settings(tile=16, overlap=0), Host(check_interrupt=check))
    assert len(desc.model.calls) == 3, "no tile runs after the interrupt"
    assert desc.model.conv.weight.dtype == torch.float32 and desc.model.conv.weight.device.type == "cpu"


def _peak_bytes(fn) -> int:
    """Peak CPU bytes allocated by torch while ``fn`` runs (allocation events in time order)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def test_batch_memory_is_bounded_by_one_frame():
    desc = per_pixel(2)
    frame = (96, 96)
    out_frame = 4 * 3 * frame[0] * 2 * frame[1] * 2

    def extra(batch: int) -> int:
        image = torch.rand(batch, *frame, 3)
        peak = _peak_bytes(lambda: upscale(desc, image, Settings(tile=48, overlap=8), Host()))
        return peak - batch * out_frame  # working set beyond the output itself

    one, many = extra(1), extra(6)
    assert many <= one + out_frame // 4, (one, many)


def test_frames_are_blended_on_the_device_when_their_output_fits():
    from srt.engine.runner import _blend_device

    gib = 2**30
    gpu = Host(device=torch.device("cuda"), output_device=torch.device("cpu"), free_memory=lambda d: 10 * gib)
    assert _blend_device(gpu, 1 * gib) == (torch.device("cuda"), 9 * gib)  # one copy per frame
    assert _blend_device(gpu, 3 * gib) == (torch.device("cpu"), 10 * gib)  # too big: blend in RAM
    unknown = Host(device=torch.device("cuda"), output_device=torch.device("cpu"))
    assert _blend_device(unknown, 1) == (torch.device("cpu"), None)
    assert _blend_device(Host(free_memory=lambda d: 10 * gib), 1)[0] == torch.device("cpu")


def _frame_with_accumulator_on(device: str) -> tuple[list, object]:
    """One 100x90 frame with 64 px tiles that run out of memory, blended into an accumulator on ``device``."""
    from srt.engine.channels import plan_channels
    from srt.engine.placement import LocalPlacement
    from srt.engine.tile_run import TileRun

    desc = wrap(OutOfMemoryAbove(limit=32 * 32), 2)
    cpu = torch.device("cpu")
    placement = LocalPlacement(desc.model, cpu, cpu)
    settings = Settings(tile=64, overlap=8)
    run = TileRun(desc, Host(), settings, plan_channels(3, 3, 3), placement, torch.float32)
    run.tile = 64
    acc = torch.zeros((3, 200, 180), device=device)
    run.frame(torch.rand(3, 100, 90, generator=torch.Generator().manual_seed(0)), acc, 0)
    return desc.model.calls, run.report


def test_oom_back_off_while_blending_on_another_device():
    """Blending on the compute device (a GPU's frame accumulator) and then an out-of-memory error:
    the sub-tiles' weights must follow the tile's weights to that device. ``meta`` stands in for
    the GPU: mixing it with CPU tensors fails just as mixing cuda and cpu tensors does."""
    calls, report = _frame_with_accumulator_on("meta")
    assert report.oom_backoffs == 1 and report.tile == (32, 32)
    cpu_calls, cpu_report = _frame_with_accumulator_on("cpu")
    assert calls == cpu_calls and report.tiles_run == cpu_report.tiles_run, "the same tiles as on the CPU"
