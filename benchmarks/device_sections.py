"""Report sections that check results: exactness, precision, out of memory (:mod:`.device_report`)."""

from __future__ import annotations

import contextlib
import importlib
import time

import torch

from .common import psnr
from .device_models import TRAINED, family_of, import_pack, on_device, photo, raw_call

EXACT_TOLERANCE = 1e-4
MATCH_TOLERANCE = 1e-3  # out-of-memory run vs an uncapped run at the same tiles (well under 1/255)
HALF = (("bf16", torch.bfloat16), ("fp16", torch.float16))


def engine(module: str):
    """``srt.engine.<module>``, the checkout registered as ``srt`` first (any section may run alone)."""
    import_pack()
    return importlib.import_module(f"srt.engine.{module}")


def crash(e: BaseException) -> str:
    return f"crash: {type(e).__name__}"


def build_crash(e: BaseException) -> str:
    """The cell of a model that could not be built (our loader or spandrel's failed)."""
    return f"build {crash(e)}"


def strict_fp32():
    """IEEE float32 (TF32 off) as the engine's fp32 runs have it; the settings restored after."""
    return engine("precision").ieee_fp32()


def run_once(ctx, desc, dtype: torch.dtype, x: torch.Tensor) -> torch.Tensor:
    """``desc``'s model on the device in ``dtype`` (a fresh copy) applied to ``x``; float32 output on the CPU."""
    module = on_device(desc, ctx.device, dtype)
    try:
        with torch.inference_mode():
            return raw_call(desc, module, x.to(ctx.device, dtype)).float().cpu()
    finally:
        del module
        ctx.free()


def exactness(ctx, sec) -> None:
    sizes = [((32, 32), "window multiple"), ((37, 29), "odd")]
    if not ctx.quick:
        sizes = [((128, 128), "window multiple"), ((99, 75), "odd")]
    sec.note(
        "Same weights (official initialisation, seeded) and the same photo crop through our module and "
        "spandrel's, fp32, TF32 off. Each model gets the input padded to its descriptor's size "
        "requirement as `descriptor(x)` does (DRCT and our HAT: a multiple of 16, our SwinIR: of 8; "
        "the others pad internally); spandrel's errors are recorded as cells. Raw, "
        f"unclamped outputs are compared. Verdict ok: max abs < {EXACT_TOLERANCE:g}."
    )
    t = sec.table(["family", "variant", "input HxW", "kind", "max abs", "max abs output", "verdict"])
    with strict_fp32():
        for variant in ctx.args.variants:
            if ctx.over_budget():
                t.add("-", variant, "-", "-", "skipped: budget", "-", "-")
                continue
            try:
                pair = ctx.pair(variant)
            except Exception as e:
                t.add(family_of(variant), variant, "-", "-", build_crash(e), "-", "-")
                continue
            mine = on_device(pair.ours, ctx.device, torch.float32)
            ref = on_device(pair.ref, ctx.device, torch.float32)
            for (h, w), kind in sizes:
                x = photo(h, w, 100, 150).to(ctx.device)
                try:
                    with torch.inference_mode():
                        a, b = raw_call(pair.ours, mine, x), raw_call(pair.ref, ref, x)
                    diff = (a - b).abs().max().item()
                    verdict = "ok" if diff < EXACT_TOLERANCE else "DIFFERS"
                    t.add(
                        pair.family,
                        variant,
                        f"{h}x{w}",
                        kind,
                        f"{diff:.2e}",
                        f"{b.abs().max().item():.3f}",
                        verdict,
                    )
                except Exception as e:
                    t.add(pair.family, variant, f"{h}x{w}", kind, crash(e), "-", "-")
            del mine, ref
            ctx.free()
            ctx.log(f"exactness {variant} done")


def precision(ctx, sec) -> None:
    size = 32 if ctx.quick else 256
    names = [*ctx.args.variants, TRAINED]
    sec.note(
        f"PSNR (dB, peak 1, raw outputs) against our fp32 output on a {size}x{size} crop of "
        "scikit-image's astronaut photo; weights converted as the engine does (`module.to(dtype)`). "
        "The variants use the official initialisation (random weights); the trained asset is "
        "ATD-light x2 after 600 training steps (tests/assets). spandrel's columns show what its modules "
        "do in half precision, errors recorded as cells (expected: crashes for ATD, for DRCT off 64 px, "
        "for SwinIR (its float32 attention mask); HAT and DAT run although spandrel marks their fp16 "
        "unsupported)."
    )
    x = photo(size, size, 100, 150)
    t = sec.table(["model", "ours bf16", "ours fp16", "spandrel bf16", "spandrel fp16"])
    for name in names:
        if ctx.over_budget():
            t.add(name, *["skipped: budget"] * 4)
            continue
        try:
            pair = ctx.pair(name)
        except Exception as e:
            t.add(name, *[build_crash(e)] * 4)
            continue
        try:
            ref = run_once(ctx, pair.ours, torch.float32, x)
        except Exception as e:
            t.add(name, *[f"fp32 {crash(e)}"] * 4)
            continue
        cells = []
        for desc in (pair.ours, pair.ref):
            for _, dtype in HALF:
                try:
                    cells.append(_db(psnr(run_once(ctx, desc, dtype, x), ref)))
                except Exception as e:
                    cells.append(crash(e))
        t.add(name, *cells)
        ctx.log(f"precision {name} done")


def _db(v: float) -> str:
    return "nan/inf" if v != v else ("inf (identical)" if v == float("inf") else f"{v:.2f}")


def make_host(ctx, warnings: list[str]):
    """The engine's host for this device: free memory from CUDA, output on the CPU, warnings collected."""
    runner = engine("runner")
    cpu = torch.device("cpu")
    return runner.Host(
        device=ctx.device,
        offload_device=cpu,
        output_device=cpu,
        free_memory=(lambda dev: torch.cuda.mem_get_info(dev)[0]) if ctx.cuda else None,
        empty_cache=torch.cuda.empty_cache if ctx.cuda else (lambda: None),
        warn=warnings.append,
    )


def timed_upscale(ctx, desc, image, settings, host):
    """``upscale`` with wall time (synchronised) and peak device memory."""
    runner = engine("runner")
    ctx.free()
    ctx.reset_peak()
    start = time.perf_counter()
    result = runner.upscale(desc, image, settings, host)
    ctx.sync()
    return result, time.perf_counter() - start, ctx.peak_mib()


@contextlib.contextmanager
def memory_cap(ctx, desc, peak_bytes: int, base_bytes: int, auto_tile: int):
    """Make the automatic tile not fit; yields a description of how.

    CUDA: ``torch.cuda.set_per_process_memory_fraction`` caps the allocator at half of the uncapped
    run's working set (a real out-of-memory error). CPU has no such cap: a forward pre-hook raises
    ``torch.OutOfMemoryError`` for tiles larger than the automatic one minus one pixel, so the
    engine's back-off (the same code) still runs -- labelled *simulated* in the report.
    """
    if ctx.cuda:
        total = torch.cuda.get_device_properties(ctx.device).total_memory
        cap = base_bytes + (peak_bytes - base_bytes) // 2
        ctx.free()
        torch.cuda.set_per_process_memory_fraction(cap / total, ctx.device)
        try:
            yield f"real: `torch.cuda.set_per_process_memory_fraction({cap / total:.6f})` = {cap / 2**20:.0f} MiB"
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, ctx.device)
            ctx.free()
        return
    limit = auto_tile - 1

    def refuse(_module, args):
        if max(args[0].shape[-2:]) > limit:
            raise torch.OutOfMemoryError(f"simulated: tile {tuple(args[0].shape[-2:])} over {limit} px")

    handle = desc.model.register_forward_pre_hook(refuse)
    try:
        yield f"simulated on CPU (no per-process memory cap there): tiles over {limit} px raise torch.OutOfMemoryError"
    finally:
        handle.remove()


def out_of_memory(ctx, sec) -> None:
    runner = engine("runner")
    # quick: the reduced ATD-light (64 px: the smallest frame whose automatic tile can still halve)
    name = "ATD_light_x4" if ctx.quick else TRAINED
    pair = ctx.pair(name)
    size = 64 if ctx.quick else 1024
    image = photo(size, size).permute(0, 2, 3, 1).contiguous()
    settings = runner.Settings(tile=0, overlap=32, precision="auto")
    warnings: list[str] = []
    host = make_host(ctx, warnings)
    ctx.free()
    base = torch.cuda.memory_allocated(ctx.device) if ctx.cuda else 0
    auto, s_auto, peak_auto = timed_upscale(ctx, pair.ours, image, settings, host)
    peak_bytes = torch.cuda.max_memory_allocated(ctx.device) if ctx.cuda else 0
    tile = auto.report.tile[0]
    with memory_cap(ctx, pair.ours, peak_bytes, base, tile) as how:
        capped, s_cap, peak_cap = timed_upscale(ctx, pair.ours, image, settings, host)
    small = capped.report.tile[0]
    same_settings = runner.Settings(tile=small, overlap=settings.overlap, precision=settings.precision)
    same, s_same, peak_same = timed_upscale(ctx, pair.ours, image, same_settings, host)
    diff = (capped.image - same.image).abs().max().item()
    vs_auto = psnr(capped.image, auto.image)
    t = sec.table(["run", "tile", "dtype", "OOM back-offs", "tiles run", "seconds", "peak MiB"])
    for label, res, s, peak in (
        ("uncapped, auto tile", auto, s_auto, peak_auto),
        ("capped, auto tile", capped, s_cap, peak_cap),
        (f"uncapped, tile {small}", same, s_same, peak_same),
    ):
        r = res.report
        t.add(
            label,
            f"{r.tile[1]}x{r.tile[0]}",
            str(r.dtype).removeprefix("torch."),
            r.oom_backoffs,
            r.tiles_run,
            f"{s:.2f}",
            peak,
        )
    if capped.report.oom_backoffs == 0:
        verdict = "no out-of-memory error happened (the cap was too loose)"
    elif diff <= MATCH_TOLERANCE:
        verdict = "matches"
    else:
        verdict = "MISMATCH"
    sec.note(
        f"{name}, {size}x{size} photo -> x{int(pair.ours.scale)}, `Settings(tile=0, overlap=32, precision='auto')`, free "
        f"memory from {'`torch.cuda.mem_get_info`' if ctx.cuda else 'nowhere (CPU: one tile per frame)'}. "
        f"Cap: {how}."
    )
    sec.note(
        f"**Result: {verdict}**: capped run vs an uncapped run at the tile it backed off to: max abs "
        f"{diff:.2e} (tolerance {MATCH_TOLERANCE:g}); vs the uncapped automatic tile: PSNR {_db(vs_auto)} dB "
        "(only the tiling differs)."
    )
    if warnings:
        sec.note("Engine warnings: " + "; ".join(f"`{w}`" for w in dict.fromkeys(warnings)))


def oom_device_blend(ctx, sec) -> None:
    """An out-of-memory error in a run whose frame is blended on the device (issue 18)."""
    runner = engine("runner")
    name = "ATD_light_x4" if ctx.quick else TRAINED
    pair = ctx.pair(name)
    size = 64 if ctx.quick else 512  # one automatic tile: the backed-off run tiles it as a 'tile=' run does
    image = photo(size, size, 60, 80).permute(0, 2, 3, 1).contiguous()
    settings = runner.Settings(tile=0, overlap=32, precision="auto")
    warnings: list[str] = []
    host = make_host(ctx, warnings)
    limit = timed_upscale(ctx, pair.ours, image, settings, host)[0].report.tile[0] - 1

    def refuse(_module, args):
        if max(args[0].shape[-2:]) > limit:
            raise torch.OutOfMemoryError(f"injected: tile {tuple(args[0].shape[-2:])} over {limit} px")

    handle = pair.ours.model.register_forward_pre_hook(refuse)
    try:
        forced, s_forced, peak_forced = timed_upscale(ctx, pair.ours, image, settings, host)
    finally:
        handle.remove()
    small = forced.report.tile[0]
    same = runner.Settings(tile=small, overlap=settings.overlap, precision=settings.precision)
    unforced, s_same, peak_same = timed_upscale(ctx, pair.ours, image, same, host)
    t = sec.table(["run", "blended on", "tile", "dtype", "OOM back-offs", "tiles run", "seconds", "peak MiB"])
    for label, res, s, peak in (
        ("injected out of memory, auto tile", forced, s_forced, peak_forced),
        (f"no error, tile {small}", unforced, s_same, peak_same),
    ):
        r = res.report
        dtype = str(r.dtype).removeprefix("torch.")
        t.add(
            label,
            r.blend_device,
            f"{r.tile[1]}x{r.tile[0]}",
            dtype,
            r.oom_backoffs,
            r.tiles_run,
            f"{s:.2f}",
            peak,
        )
    diff = (forced.image - unforced.image).abs().max().item()
    blend = forced.report.blend_device
    on_device = blend is not None and blend.type == ctx.device.type
    if forced.report.oom_backoffs == 0:
        verdict = "no out-of-memory error happened"
    elif ctx.cuda and not on_device:
        verdict = "NOT BLENDED ON THE DEVICE (too little free memory for the frame?)"
    else:
        verdict = "finished, matches" if diff <= MATCH_TOLERANCE else "finished, MISMATCH"
    where = (
        "on the GPU: the frame's blend weights live there when the error comes, and the sub-tiles' "
        "weights must follow them"
        if ctx.cuda
        else "on the CPU, which is also the output device here; the blend-on-another-device path is "
        "checked on the CPU by tests/test_engine_memory.py (a `meta` accumulator)"
    )
    sec.note(
        f"{name}, {size}x{size} photo -> x{int(pair.ours.scale)}, `Settings(tile=0, overlap=32)`: one "
        f"automatic tile of {limit + 1} px. A forward pre-hook raises `torch.OutOfMemoryError` for "
        f"tiles over {limit} px (injected: deterministic, whatever the GPU's size); the frame is blended {where}."
    )
    sec.note(
        f"**Result: {verdict}**: vs a run without the error at the tile it backed off to: max abs "
        f"{diff:.2e} (tolerance {MATCH_TOLERANCE:g})."
    )
    if warnings:
        sec.note("Engine warnings: " + "; ".join(f"`{w}`" for w in dict.fromkeys(warnings)))
