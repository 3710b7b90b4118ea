"""Report section: the compiled path per family, eager vs ``torch.compile`` vs CUDA graphs (:mod:`.device_report`).

One variant per family (:data:`COMPILED_VARIANTS`, or the ``--variants`` named), one square tile
(512 px; ``--quick``: 32 px), bf16 then fp16 (CPU: fp32 only), through the engine's compiled forward
(``srt.engine.compiled.compiled``: ``torch.compile`` of the class's ``forward``, ``dynamic=False``)
under ``torch.inference_mode()``. Each model runs one eager tile first, which builds its geometry
cache (masks, biases) outside the compiled region, as the engine does.

Per dtype, two passes over the families, so that a spent budget still leaves every family measured
in the first: (1) eager, then inductor in its default mode, with one more compiled tile under
``torch.cuda.set_sync_debug_mode("error")`` (bf16 only: a host sync inside the forward raises);
(2) CUDA graphs (``mode="reduce-overhead"``, the engine's mode on CUDA; CUDA only). A compile is not
started when the last one's duration no longer fits in the section's share of the budget
(``--compile-budget-s``). On the CPU the ``eager`` backend stands in for inductor (dynamo traces,
the graph runs as traced: graphs and breaks are counted, no code is generated), so the quick run
stays short.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from .device_models import family_of, on_device, photo, raw_call
from .device_sections import HALF, build_crash, crash, engine

COMPILED_VARIANTS = ["RGT_S_x4", "DRCT_x4", "ATD_light_x4", "HAT_S_x4", "DAT_light_x4", "SwinIR_M_x4"]
TARGET_S = 0.3  # timed seconds per measurement on CUDA (2 to 10 calls, median)
PATHS = ("eager", "compiled", "CUDA graphs")
COLUMNS = ["family", "variant", "path", "ms / tile", "vs eager", "compile s", "max abs vs eager"]
COLUMNS += ["graphs", "breaks", "note"]
SKIPPED = ["skipped: budget"] + ["-"] * 6
FIRST_PASS = 0.6  # bf16 on CUDA: the compiled pass's part of the share; CUDA graphs get the rest


def cell(e: BaseException, limit: int = 160) -> str:
    """An error as one table cell: type and the first line of its message (no ``|``)."""
    first = (str(e).strip().splitlines() or [""])[0].replace("|", "/")
    return f"{crash(e)}: {first[:limit]}".rstrip(": ")


def compiler_counts() -> dict[str, int]:
    """What the compiler did in this process so far: graphs compiled, graph breaks met, CUDA-graph
    skips, and inputs a recorded CUDA graph copies into its static buffers on every replay."""
    from torch._dynamo.utils import counters

    return {
        "graphs": counters["stats"]["unique_graphs"],
        "breaks": sum(counters["graph_break"].values()),
        "skips": counters["inductor"]["cudagraph_skips"],
        "copied": counters["inductor"]["cudagraph_recorded_non_static_inputs"],
    }


def reset_compiler() -> None:
    """Drop compiled code and CUDA-graph memory pools (later sections run eagerly)."""
    torch._dynamo.reset()
    try:
        from torch._inductor.cudagraph_trees import reset_cudagraph_trees

        reset_cudagraph_trees()
    except (ImportError, AttributeError):
        pass


class Share:
    """The section's time: from its start to ``--compile-budget-s`` later (or ``--budget-s``).

    A compile starts only when the previous one's first call would still end in time.
    """

    def __init__(self, ctx) -> None:
        self.ctx, self.start = ctx, ctx.elapsed()
        self.end = min(self.start + ctx.args.compile_budget_s, ctx.args.budget_s)
        self.last_compile_s = 0.0

    def left(self) -> bool:
        return self.ctx.elapsed() < self.end

    def fits_compile(self, fraction: float = 1.0) -> bool:
        """Whether the next compile ends within ``fraction`` of the share."""
        until = self.start + fraction * (self.end - self.start)
        return self.ctx.elapsed() + self.last_compile_s < until


def _once(ctx, call: Callable) -> float:
    """Seconds of one ``call()`` (its output dropped): CUDA events, else the wall clock."""
    if ctx.cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    start_s = time.perf_counter()
    call()
    return time.perf_counter() - start_s


def timed(ctx, call: Callable) -> tuple[float, int]:
    """Median seconds per call and the number of calls (CUDA full run: about :data:`TARGET_S`)."""
    times = [_once(ctx, call)]
    if ctx.cuda and not ctx.quick:
        times += [_once(ctx, call) for _ in range(max(2, min(10, int(TARGET_S / max(times[0], 1e-4)))) - 1)]
    return statistics.median(times), len(times)


class Placed:
    """One variant on the device in one dtype, its input tile, and its eager output and time."""

    def __init__(self, ctx, desc, dtype: torch.dtype, size: int) -> None:
        self.desc, self.module = desc, on_device(desc, ctx.device, dtype)
        self.x = photo(size, size, 0, 0).to(ctx.device, dtype)
        self.eager = raw_call(desc, self.module, self.x).to(torch.float32, copy=True)  # builds the geometry
        self.eager_s, self.n = timed(ctx, lambda: raw_call(desc, self.module, self.x))

    def row(self) -> list[str]:
        return [f"{self.eager_s * 1000:.1f}", "1.00x", "-", "-", "-", "-", f"n={self.n}"]


def host_sync(ctx, call: Callable) -> str:
    """Whether ``call()`` syncs with the host: run under ``set_sync_debug_mode("error")`` (CUDA)."""
    if not ctx.cuda:
        return "n/a (CPU)"
    ctx.sync()
    torch.cuda.set_sync_debug_mode("error")
    try:
        call()
    except Exception as e:  # the sync's error names a "synchronizing" operation
        return f"{'HOST SYNC' if 'synchroniz' in str(e) else 'sync check'}: {cell(e, 120)}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ctx.sync()
    return "no host sync"


def compiled_path(
    ctx, api, placed: Placed, backend, mode: str | None, check_sync: bool
) -> tuple[list[str], float]:
    """One compiled path of ``placed``: the table cells (without family, variant, path) and the
    first call's seconds (compile included)."""
    fn = api.compiled(placed.module, backend, mode)
    cuda_graphs = mode == api.CUDA_GRAPHS

    def call() -> torch.Tensor:
        if cuda_graphs:  # the previous call's output is consumed: its static buffer may be reused
            torch.compiler.cudagraph_mark_step_begin()
        return raw_call(placed.desc, fn, placed.x)

    before = compiler_counts()
    start = time.perf_counter()
    call()
    ctx.sync()
    first_s = time.perf_counter() - start
    for _ in range(2 if cuda_graphs else 0):  # CUDA graph trees: a warm-up run, then the recording
        call()
    diff = (call().to(torch.float32, copy=True) - placed.eager).abs().max().item()
    notes = [host_sync(ctx, call)] if check_sync else []
    seconds, n = timed(ctx, call)
    did = {key: value - before[key] for key, value in compiler_counts().items()}
    if cuda_graphs and did["skips"]:
        notes.append(f"CUDA graphs SKIPPED ({did['skips']}x; TORCH_LOGS=cudagraphs says why)")
    elif cuda_graphs:
        notes.append(f"replayed, {did['copied']} input(s) copied per replay")
    cells = [
        f"{seconds * 1000:.1f}",
        f"{placed.eager_s / seconds:.2f}x",
        f"{max(0.0, first_s - seconds):.1f}",
        f"{diff:.2e}",
        str(did["graphs"]),
        str(did["breaks"]),
        ", ".join([*notes, f"n={n}"]),
    ]
    return cells, first_s


def compiled(ctx, sec) -> None:
    run = CompiledRun(ctx)
    sec.note(
        f"One {run.size}x{run.size} tile (photo) through our module, per family, "
        + " and ".join(name for name, _ in run.dtypes)
        + f", under `torch.inference_mode()`: eager; `torch.compile(backend='{run.backend}', "
        "dynamic=False)` of the class's forward as the engine compiles it (srt.engine.compiled)"
        + ("; CUDA graphs (`mode='reduce-overhead'`, the engine's mode on CUDA)" if run.cuda_graphs else "")
        + ". One eager tile first builds the geometry cache. `ms / tile`: median of "
        + ("2-10 calls (CUDA events)" if ctx.cuda and not ctx.quick else "one call")
        + " after warm-up; `compile s`: the first compiled call minus a steady one; `max abs`: the "
        "compiled output against the eager one (same dtype); `graphs` / `breaks`: what dynamo "
        "compiled and broke on during the measurement (a whole-model compile: 1 and 0); `note`: the "
        "number of timed calls and"
        + (
            " `no host sync` or the error of one compiled tile (bf16) under "
            "`torch.cuda.set_sync_debug_mode('error')`; whether the CUDA graphs replayed (inductor "
            "skips them silently for some graphs) and how many inputs each replay copies into the "
            "graph's static buffers (the tile, and any geometry tensor not held as a buffer). Order: "
            "per dtype, eager and compiled for every family, then CUDA graphs (bf16: the compiled pass "
            f"starts no compile after {FIRST_PASS:.0%} of the section's share, so CUDA graphs get the "
            "rest)."
            if ctx.cuda
            else " the host-sync check (n/a on the CPU)."
        )
        + f" The section's share of the budget: {ctx.args.compile_budget_s:g} s."
    )
    if not ctx.cuda:
        sec.note(
            "CPU: fp32 only, dynamo's `eager` backend (the traced graph runs as is; no inductor code, so "
            "the times say nothing about inductor), no CUDA graphs, no sync check."
        )
    reset_compiler()  # compile times from a cold start; nothing left from an earlier run
    try:
        with torch.inference_mode():
            for i, (name, dtype) in enumerate(run.dtypes):
                run.dtype_passes(name, dtype, FIRST_PASS if i == 0 and run.cuda_graphs else 1.0)
    finally:
        reset_compiler()
        run.tables(sec)


class CompiledRun:
    """The section's settings, budget and results (cells per (dtype name, variant, path))."""

    def __init__(self, ctx) -> None:
        self.ctx, self.api, self.share = ctx, engine("compiled"), Share(ctx)
        self.cuda_graphs = ctx.cuda and hasattr(torch.compiler, "cudagraph_mark_step_begin")
        self.backend = "inductor" if ctx.cuda else "eager"
        self.size = 32 if ctx.quick else 512
        self.variants = list(ctx.args.variants) if ctx.args.variants_named else COMPILED_VARIANTS
        # half precision on a CPU: slow, and beside the point of the eager backend's trace
        self.dtypes = HALF if ctx.cuda else (("fp32", torch.float32),)
        self.results: dict[tuple[str, str, str], list[str]] = {}

    def dtype_passes(self, name: str, dtype: torch.dtype, first_pass: float) -> None:
        """Pass 1 (eager, compiled: within ``first_pass`` of the share) then pass 2 (CUDA graphs)."""
        placed: dict[str, Placed] = {}
        try:
            for variant in self.variants:
                if not self.share.left():
                    break
                try:
                    pair = self.ctx.pair(variant)
                except Exception as e:
                    self.results[(name, variant, "eager")] = [build_crash(e)] + ["-"] * 6
                    continue
                try:
                    placed[variant] = p = Placed(self.ctx, pair.ours, dtype, self.size)
                    self.results[(name, variant, "eager")] = p.row()
                except Exception as e:
                    self.results[(name, variant, "eager")] = [cell(e)] + ["-"] * 6
                    self.ctx.free()
                    continue
                self.compile_one((name, variant, "compiled"), p, None, first_pass)
            for variant, p in placed.items() if self.cuda_graphs else []:
                self.compile_one((name, variant, "CUDA graphs"), p, self.api.CUDA_GRAPHS, 1.0)
        finally:
            placed.clear()
            self.ctx.free()

    def compile_one(
        self, key: tuple[str, str, str], placed: Placed, mode: str | None, fraction: float
    ) -> None:
        """One compiled measurement into ``results[key]`` (a crash is a cell), if the budget allows."""
        if not self.share.fits_compile(fraction):
            return
        ctx, (name, variant, path) = self.ctx, key
        ctx.log(f"compiled {variant} {name} {path}: compiling")
        start = time.perf_counter()
        try:
            self.results[key], first_s = compiled_path(
                ctx,
                self.api,
                placed,
                self.backend,
                mode,
                check_sync=mode is None and name == self.dtypes[0][0],
            )
        except Exception as e:
            self.results[key], first_s = [cell(e)] + ["-"] * 6, time.perf_counter() - start
        self.share.last_compile_s = first_s
        ctx.log(f"compiled {variant} {name} {path}: {self.results[key][0]} ms, first call {first_s:.1f}s")

    def tables(self, sec) -> None:
        """One table per dtype; what did not run says why."""
        absent = "n/a (CPU)" if not self.ctx.cuda else "n/a (no torch.compiler.cudagraph_mark_step_begin)"
        for name, _ in self.dtypes:
            t = sec.table([f"{name}: {COLUMNS[0]}", *COLUMNS[1:]])
            for variant in self.variants:
                for path in PATHS:
                    default = (
                        [absent] + ["-"] * 6 if path == "CUDA graphs" and not self.cuda_graphs else SKIPPED
                    )
                    t.add(
                        family_of(variant), variant, path, *self.results.get((name, variant, path), default)
                    )
