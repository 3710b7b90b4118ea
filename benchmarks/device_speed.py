"""Report sections that measure time and memory: speed per tile, end to end (:mod:`.device_report`)."""

from __future__ import annotations

import importlib
import statistics
import time

import torch

from .common import psnr
from .device_models import count_flops, on_device, photo, raw_call
from .device_sections import build_crash, crash, make_host, timed_upscale

# Counted FLOPs of a 512 -> 2048 x4 tile the issue expects (TFLOP), to check the counter against.
EXPECTED_TFLOP_512 = {
    "RGT_x4": 11,
    "RGT_S_x4": 8.6,
    "DRCT_x4": 9.5,
    "DRCT_L_x4": 18,
    "ATD_x4": 15,
    "ATD_light_x4": 0.9,
}
IMPLS = (
    ("spandrel fp32", "ref", torch.float32),
    ("ours fp32", "ours", torch.float32),
    ("ours bf16", "ours", torch.bfloat16),
    ("ours fp16", "ours", torch.float16),
    ("spandrel bf16", "ref", torch.bfloat16),
)
TARGET_S = 0.5  # timed seconds per measurement on CUDA (1 to 10 calls, median)
LIGHT_TARGET_S = 0.25  # the same for a variant measured lighter (Context.light: HAT, DAT, SwinIR by default)


def _timed(ctx, call) -> float:
    """Seconds of one ``call()``: CUDA events (they include host-side stalls), else the wall clock."""
    if ctx.cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.inference_mode():
            call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    start_s = time.perf_counter()
    with torch.inference_mode():
        call()
    return time.perf_counter() - start_s


def measure(ctx, desc, dtype: torch.dtype, x: torch.Tensor, count: bool, target_s: float = TARGET_S) -> dict:
    """Median seconds per call, peak memory, counted FLOPs (warm-up call, when ``count``), finiteness.

    On CUDA (full run) the timed calls add up to about ``target_s`` seconds (1 to 10 calls).

    The device copy of the model is freed when this returns (or raises); the caller empties the cache.
    """
    module = on_device(desc, ctx.device, dtype)
    xin = x.to(ctx.device, dtype)

    def call():
        return raw_call(desc, module, xin)

    start = time.perf_counter()
    if count:
        y, flops = count_flops(call)
    else:
        with torch.inference_mode():
            y, flops = call(), None
    ctx.sync()
    warm = time.perf_counter() - start
    finite = bool(torch.isfinite(y).all())
    del y
    if ctx.cuda and warm < 0.5:  # a second warm-up for fast calls (caches, kernel selection)
        _timed(ctx, call)
    n = 1  # CPU, quick, or calls slower than the target: one timed call after the warm-up
    if ctx.cuda and not ctx.quick and warm <= target_s:
        n = max(2, min(10, int(target_s / max(warm, 1e-3))))
    ctx.reset_peak()
    seconds = statistics.median(_timed(ctx, call) for _ in range(n))
    return {"s": seconds, "peak": ctx.peak_mib(), "flops": flops, "finite": finite, "n": n}


def speed(ctx, sec) -> None:
    sizes = sorted(ctx.args.speed_tiles)
    peak = ctx.args.peak_tflops
    sec.note(
        "One square tile through the raw module (no engine), photo content. Median of 1-10 timed calls "
        f"(about {TARGET_S:g} s) after warm-up (CUDA events; CPU: one call). `out MP/s`: output megapixels per second. "
        "`TFLOP/s` divides the FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (2 per "
        "multiply-add; matmul, convolution and attention only) in spandrel's model -- the official "
        "code's arithmetic -- at that exact size on this device (no scaling), by the time; "
        f"`% peak` is that against {peak:g} TFLOP/s (bf16 dense). Peak memory includes the weights."
    )
    light = [v for v in ctx.args.variants if ctx.light(v)]
    if light:
        sec.note(
            f"Measured lighter (not named in `--variants`): {', '.join(light)} -- the {sizes[-1]} px tile only"
            + (
                f", about {LIGHT_TARGET_S:g} s of timed calls per measurement (others: {TARGET_S:g} s)."
                if ctx.cuda and not ctx.quick
                else "."
            )
        )
    if not ctx.cuda:
        sec.note(
            "CPU: the count of ours misses its oneDNN linear layers and CPU attention kernel (the counter "
            "has no formula for them); the official code's count is the one used."
        )
    flops_table = sec.table(["variant", "tile", "GFLOP (official code)", "GFLOP (ours)", "issue expects"])
    for size in sizes:
        x = photo(size, size, 0, 0)
        t = sec.table(
            [f"{size}px: variant", "impl", "ms / tile", "out MP/s", "TFLOP/s", "% peak", "peak MiB", "note"]
        )
        for variant in ctx.args.variants:
            if ctx.light(variant) and size != sizes[-1]:
                continue
            if ctx.over_budget():
                t.add(variant, "all", *["skipped: budget"] + ["-"] * 5)
                continue
            try:
                pair = ctx.pair(variant)
            except Exception as e:
                t.add(variant, "all", build_crash(e), *["-"] * 5)
                continue
            target_s = LIGHT_TARGET_S if ctx.light(variant) else TARGET_S
            counts: dict[str, int | None] = {"ref": None, "ours": None}
            for label, side, dtype in IMPLS:
                if ctx.over_budget():
                    t.add(variant, label, "skipped: budget", *["-"] * 5)
                    continue
                desc = pair.ref if side == "ref" else pair.ours
                try:
                    m = measure(ctx, desc, dtype, x, count=dtype == torch.float32, target_s=target_s)
                except Exception as e:
                    t.add(variant, label, crash(e), *["-"] * 5)
                    ctx.log(f"speed {variant} {size} {label}: {crash(e)}")
                    continue
                finally:
                    if ctx.cuda:
                        torch.cuda.empty_cache()
                if m["flops"] is not None:
                    counts[side] = m["flops"]
                flops = counts["ref"] or counts["ours"]
                mark = "" if counts["ref"] else " (ours count)"
                tflops = flops / m["s"] / 1e12 if flops else None
                scale = int(desc.scale)
                note = [f"n={m['n']}"] + ([] if m["finite"] else ["NaN/inf output"])
                t.add(
                    variant,
                    label,
                    f"{m['s'] * 1000:.1f}",
                    f"{(size * scale) ** 2 / 1e6 / m['s']:.3g}",
                    f"{tflops:.3g}{mark}" if tflops else "-",
                    f"{100 * tflops / peak:.3g}" if tflops else "-",
                    m["peak"],
                    ", ".join(note),
                )
                ctx.log(f"speed {variant} {size}px {label}: {m['s'] * 1000:.1f} ms (n={m['n']})")
            expected = EXPECTED_TFLOP_512.get(variant) if size == 512 and not ctx.quick else None
            flops_table.add(
                variant,
                size,
                f"{counts['ref'] / 1e9:.1f}" if counts["ref"] else "-",
                f"{counts['ours'] / 1e9:.1f}" if counts["ours"] else "-",
                f"~{expected * 1000:g}" if expected else "-",
            )


def core_upscale(ctx, desc, image: torch.Tensor, tile: int, overlap: int) -> tuple[torch.Tensor, int]:
    """ComfyUI core's "Upscale Image (using Model)" path: model to the device, ``tiled_scale`` with
    output on the CPU, tile halved on out-of-memory (down to 128), model back to the CPU, clamp."""
    from .bench_tiling import core_tiled_scale

    calls = []

    def fn(a: torch.Tensor) -> torch.Tensor:
        calls.append(a.shape)
        return desc(a).to("cpu")

    desc.model.to(ctx.device)
    try:
        in_img = image.movedim(-1, -3).to(ctx.device)
        while True:
            calls.clear()
            try:
                with torch.inference_mode():
                    s = core_tiled_scale(in_img, fn, tile, overlap, int(desc.scale))
                break
            except torch.OutOfMemoryError:
                tile //= 2
                if tile < 128:
                    raise
    finally:
        desc.model.to("cpu")
    return torch.clamp(s.movedim(-3, -1), 0.0, 1.0), len(calls)


def end_to_end(ctx, sec) -> None:
    runner_settings = importlib.import_module("srt.engine.runner").Settings
    size, tile, overlap = (32, 24, 8) if ctx.quick else (1024, 512, 32)
    image = photo(size, size).permute(0, 2, 3, 1).contiguous()
    sec.note(
        f"A {size}x{size} photo (astronaut, enlarged bicubic) -> {4 * size}x{4 * size}, one run each, output on the CPU as "
        "in ComfyUI. Ours: `upscale(..., Settings(tile=0, overlap=" + str(overlap) + ", precision='auto'))`, "
        f"free memory from the device. Core: spandrel, fp32, tile {tile}, overlap {overlap}, "
        "`comfy.utils.tiled_scale`'s arithmetic (benchmarks/bench_tiling.py), model moved to the device "
        "and back. Seconds include moving the weights; peak is device memory."
    )
    light = [v for v in ctx.args.variants if ctx.light(v)]
    if light:
        sec.note(f"Not run here (measured lighter, not named in `--variants`): {', '.join(light)}.")
    t = sec.table(["variant", "ours s", "ours peak MiB", "ours tile, dtype", "core s", "core peak MiB",
                   "core tiles", "speed-up", "PSNR ours vs core"])  # fmt: skip
    warnings: list[str] = []
    host = make_host(ctx, warnings)
    for variant in [v for v in ctx.args.variants if not ctx.light(v)]:
        if ctx.over_budget():
            t.add(variant, "skipped: budget", *["-"] * 7)
            continue
        try:
            pair = ctx.pair(variant)
        except Exception as e:
            t.add(variant, build_crash(e), *["-"] * 7)
            continue
        cells = [variant]
        try:
            res, s_ours, peak_ours = timed_upscale(
                ctx, pair.ours, image, runner_settings(0, overlap, "auto"), host
            )
            th, tw = res.report.tile
            cells += [
                f"{s_ours:.2f}",
                peak_ours,
                f"{tw}x{th}, {str(res.report.dtype).removeprefix('torch.')}",
            ]
        except Exception as e:
            res, s_ours = None, None
            cells += [crash(e), "-", "-"]
        try:
            ctx.free()
            ctx.reset_peak()
            start = time.perf_counter()
            out, n = core_upscale(ctx, pair.ref, image, tile, overlap)
            ctx.sync()
            s_core = time.perf_counter() - start
            cells += [f"{s_core:.2f}", ctx.peak_mib(), n]
            cells += [
                f"{s_core / s_ours:.1f}x" if s_ours else "-",
                f"{psnr(res.image, out):.2f}" if res else "-",
            ]
        except Exception as e:
            cells += [crash(e), "-", "-", "-", "-"]
        t.add(*cells)
        ctx.log(f"end to end {variant}: {cells[1]} s ours, {cells[4]} s core")
    if warnings:
        sec.note("Engine warnings: " + "; ".join(f"`{w}`" for w in dict.fromkeys(warnings)))
