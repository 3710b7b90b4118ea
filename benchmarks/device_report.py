"""One command that measures the pack on a GPU and writes a markdown report (issues 12, 18, compile).

    python -m benchmarks.device_report                          # default run: about 5-6 min on one H200
    python -m benchmarks.device_report --device cpu --quick     # tiny sizes, reduced configs (CI runs this)
    python -m benchmarks.device_report --sections environment compiled --compile-budget-s 480 --budget-s 500
    python -m benchmarks.device_report --sections speed --variants DRCT_x4 --speed-tiles 256 512

Sections, in run order (the report is written in this order too): environment; exactness (ours vs
spandrel, fp32, same weights and input, at a window multiple and an odd size); precision (bf16/fp16
PSNR vs our fp32 on a photo crop); compiled (eager vs ``torch.compile`` vs CUDA graphs per family,
see :mod:`benchmarks.device_compiled`); out of memory for real (a memory cap makes the automatic
tile fail; the run backs off and matches); out of memory while the frame is blended on the GPU (an
injected error; the run finishes and matches); end to end (1024 -> 4096 x4: our engine vs ComfyUI
core's path); speed per variant and tile (ms, output MP/s, TFLOP/s from counted FLOPs, % of the
bf16 dense peak, peak memory); ONNX runtimes (our export in onnxruntime-CUDA / TensorRT, where those
import on the device: :mod:`benchmarks.device_export`; otherwise one line says they were absent). Weights are built in-process (:mod:`benchmarks.device_models`);
nothing is read from ``../shared``. Every section and measurement is guarded: a crash is a table
cell or a note and the run goes on (spandrel's half-precision crashes, for one). After
``--budget-s`` seconds what is left is skipped and marked so; the compiled section stops starting
compiles after its own ``--compile-budget-s``.

Each section is appended to ``--out`` and to stdout (flushed) as soon as it finishes, so a run cut
short (a timeout's kill) leaves every finished section on disk; the closing "Run" table (status and
seconds per section) is written last. Progress goes to stderr.

What the default run covers (no ``--variants``: :data:`~benchmarks.device_models.DEFAULT_VARIANTS`,
one variant per family, ATD twice for its two upsamplers), and its estimated time on one H200 (not
yet measured; the compile times are the unknown):

* exactness and precision: ``RGT_x4 DRCT_x4 ATD_x4 ATD_light_x4 HAT_S_x4 DAT_light_x4 SwinIR_M_x4``
  (+ the trained ATD-light asset in precision): ~0.5 min with the CPU builds of the weights.
* compiled: ``RGT_S_x4 DRCT_x4 ATD_light_x4 HAT_S_x4 DAT_light_x4 SwinIR_M_x4`` at 512 px, bf16
  then fp16; eager, inductor, CUDA graphs; one host-sync check per family: ``--compile-budget-s``
  (default 180 s, 3 min; an inductor compile of one of these models is expected to take tens of
  seconds, so the share may end before fp16, or before the last families' CUDA graphs: their cells
  say "skipped: budget"; the third command above gives the section ~8 min alone).
* out of memory (both sections): the trained ATD-light asset (the engine's back-off is the same
  for every family): ~15 s.
* end to end: ``RGT_x4 DRCT_x4 ATD_x4 ATD_light_x4``: ~0.5 min.
* speed per tile at 512 px (``--speed-tiles`` for more sizes): every default variant, about
  0.5 s of timed calls per measurement (HAT, DAT, SwinIR: 0.25 s): ~0.75 min.

That is ~5-5.5 min; ``--budget-s`` (default 330 s; ``--quick``: 1200 s) caps it (speed per tile, last, loses its last
rows first), so the run ends by ~6 min with the measurement that was under way. A variant named
in ``--variants`` gets every section whatever its family (``--variants HAT_x4`` runs it end to
end too, and in the compiled section).

On the device machine (torch 2.11, torchvision, einops, safetensors, numpy, scikit-image; no
network, no spandrel): here, once, ``pip download spandrel==0.4.2 --no-deps -d .carry/``
(``.carry/`` is git-ignored), then run with ``carry: [".carry"]``::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site \\
        .carry/spandrel-0.4.2-py3-none-any.whl && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 && \\
        python3 -m benchmarks.device_report --out "$OUT/device_report.md"

(``pip install --no-deps .carry/spandrel-0.4.2-py3-none-any.whl`` works too where the environment
is writable.) spandrel imports torchvision at import time; the device image has it.

Without ``--out`` the report goes to ``docs/benchmarks/<gpu>-<date>.md`` (CPU or ``--quick``:
``benchmarks/results/``, git-ignored). Run from the repository root.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable

import torch

from .device_models import DEFAULT_VARIANTS, REPO, VARIANTS
from .device_run import Context, Section, Writer, device_name, slug

BF16_PEAK_TFLOPS = 790.0  # H200 dense bf16 matmul
BUDGET_S = 330.0  # the default run on one H200 ends by ~6 min (module docstring)
QUICK_BUDGET_S = 1200.0  # a smoke run on a busy CPU takes minutes; it should not lose sections
# run order, which is also the report's order: the decisive checks first, then the compiled path
# (what this round is about), speed last (the budget cuts its last rows, the lighter variants')
SECTION_KEYS = ["environment", "exactness", "precision", "compiled", "oom", "oom_device_blend"]
SECTION_KEYS += ["end_to_end", "speed", "onnx"]


def environment(ctx: Context, sec: Section) -> None:
    import numpy
    import skimage
    import spandrel

    t = sec.table(["item", "value"])
    t.add("device", f"{ctx.device} ({device_name(ctx)})")
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        t.add(
            "GPU memory",
            f"{props.total_memory / 2**30:.1f} GiB, compute capability {props.major}.{props.minor}",
        )
        t.add("CUDA (torch build)", torch.version.cuda)
        t.add("cuDNN", torch.backends.cudnn.version())
        t.add("bf16 supported", torch.cuda.is_bf16_supported())
        t.add(
            "TF32 (matmul / cuDNN)",
            f"{torch.backends.cuda.matmul.allow_tf32} / {torch.backends.cudnn.allow_tf32}",
        )
    t.add("CPU threads", torch.get_num_threads())
    t.add("torch", torch.__version__)
    t.add("spandrel", spandrel.__version__)
    t.add("triton (inductor's GPU code)", _version("triton"))
    t.add("numpy / scikit-image", f"{numpy.__version__} / {skimage.__version__}")
    t.add("python", platform.python_version())
    t.add("platform", platform.platform())
    t.add("peak used for %", f"{ctx.args.peak_tflops:g} TFLOP/s (bf16 dense)")
    t.add(
        "mode",
        "quick: tiny sizes, reduced configs (depth and width)" if ctx.quick else "full: official configs",
    )


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() + (" (+ local changes)" if dirty.stdout.strip() else "") or "unknown"
    except OSError:
        return "unknown (no git)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and reduced configs (CPU, CI)")
    p.add_argument("--out", default=None, help="markdown file (default: docs/benchmarks/<gpu>-<date>.md)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help=f"skip what is left after this many seconds (default {BUDGET_S:g}; --quick: {QUICK_BUDGET_S:g})",
    )
    p.add_argument(
        "--compile-budget-s",
        type=float,
        default=180.0,
        help="the compiled section starts no compile after this many seconds of its own",
    )
    p.add_argument(
        "--peak-tflops", type=float, default=BF16_PEAK_TFLOPS, help="bf16 dense peak for the %% column"
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=VARIANTS,
        help="default: one per family (HAT, DAT, SwinIR measured lighter); named ones get every section",
    )
    p.add_argument(
        "--speed-tiles",
        nargs="+",
        type=int,
        default=None,
        help="speed section tile sizes (default 512; quick 32)",
    )
    p.add_argument("--sections", nargs="+", default=None, choices=SECTION_KEYS, help="only these sections")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = p.parse_args(argv)
    args.variants_named = args.variants is not None
    if args.variants is None:
        args.variants = list(DEFAULT_VARIANTS)
    if args.budget_s is None:
        args.budget_s = QUICK_BUDGET_S if args.quick else BUDGET_S
    if args.speed_tiles is None:
        args.speed_tiles = [32] if args.quick else [512]
    return args


def default_out(ctx: Context) -> str:
    stamp = datetime.date.today().isoformat()
    name = f"{slug(device_name(ctx))}-{stamp}.md"
    if ctx.cuda and not ctx.quick:
        return os.path.join(REPO, "docs", "benchmarks", name)
    return os.path.join(REPO, "benchmarks", "results", f"device_report-{name}")


def section_functions() -> dict[str, tuple[str, Callable]]:
    """Section key -> (title, function(ctx, section)), in :data:`SECTION_KEYS` order."""
    from . import device_compiled as dc
    from . import device_export as de
    from . import device_sections as ds
    from . import device_speed as sp

    return {
        "environment": ("Environment", environment),
        "exactness": ("Exactness: ours vs spandrel (fp32)", ds.exactness),
        "precision": ("Precision: bf16 / fp16 vs our fp32", ds.precision),
        "compiled": ("Compiled: eager vs torch.compile vs CUDA graphs", dc.compiled),
        "oom": ("Out of memory for real", ds.out_of_memory),
        "oom_device_blend": ("Out of memory while blending on the device", ds.oom_device_blend),
        "end_to_end": ("End to end: one image x4, our engine vs ComfyUI core's path", sp.end_to_end),
        "speed": ("Speed per tile", sp.speed),
        "onnx": ("ONNX runtimes: onnxruntime-CUDA and TensorRT on the exported graph", de.onnx_runtimes),
    }


def run_section(ctx: Context, sec: Section, fn: Callable) -> None:
    """Run one section (unless not selected or the budget is spent); a crash becomes its notes."""
    args = ctx.args
    if args.sections is not None and sec.key not in args.sections:
        sec.status = "not selected"
        sec.note("_Not selected (`--sections`)._")
        return
    if ctx.over_budget():
        sec.status = "skipped: budget"
        sec.note(f"_Skipped: the time budget ({args.budget_s:g} s) was spent before this section._")
        return
    ctx.log(f"section {sec.key}")
    start = time.perf_counter()
    try:
        fn(ctx, sec)
        sec.status = "ok"
    except Exception as e:  # one failing section must not lose the others
        sec.status = f"failed: {type(e).__name__}"
        tb = traceback.format_exc().strip().splitlines()[-12:]
        sec.note(f"**Section failed:** `{type(e).__name__}: {str(e)[:300]}`")
        sec.note("```\n" + "\n".join(tb) + "\n```")
        ctx.log(f"section {sec.key} failed: {type(e).__name__}: {e}")
    finally:
        ctx.free()
    sec.seconds = time.perf_counter() - start
    sec.note(f"_Section {sec.status} in {sec.seconds:.1f} s; {ctx.elapsed():.0f} s into the run._")
    ctx.log(f"section {sec.key}: {sec.status} in {sec.seconds:.1f}s")


def main(argv: list[str] | None = None, sections: dict[str, tuple[str, Callable]] | None = None) -> str:
    """Run the report; returns the markdown (also printed and written to ``--out``, section by section).

    ``sections``: key -> (title, function), default :func:`section_functions` (tests pass their own).
    """
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context(args)
    sections = section_functions() if sections is None else sections
    command = "python -m benchmarks.device_report " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    out = args.out or default_out(ctx)
    writer = Writer(out)
    quick = "; **quick mode: tiny sizes, reduced configs (depth and width), numbers are smoke values**"
    writer.write([
        f"# Device report: {device_name(ctx)}, {datetime.date.today().isoformat()}",
        "",
        f"Command: `{command.strip()}`  ",
        f"Commit: {_git_commit()}; budget {args.budget_s:g} s (compiled section: {args.compile_budget_s:g} s)"
        + (quick if ctx.quick else ""),
        "",
    ])  # fmt: skip
    secs = [Section(key, title) for key, (title, _) in sections.items()]
    try:
        for sec in secs:
            run_section(ctx, sec, sections[sec.key][1])
            writer.write(sec.render())
        run = Section("run", "Run")
        t = run.table(["section", "status", "seconds"])
        for sec in secs:
            t.add(sec.key, sec.status, f"{sec.seconds:.1f}")
        run.note(f"Total {ctx.elapsed():.0f} s (budget {args.budget_s:g} s).")
        writer.write(run.render())
    finally:
        report = writer.close()
    ctx.log(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
