"""One command that measures the pack on a GPU and writes a markdown report (issue 12).

    python -m benchmarks.device_report                          # full run on CUDA, <= ~8 min on one H200
    python -m benchmarks.device_report --device cpu --quick     # tiny sizes, reduced configs (CI runs this)
    python -m benchmarks.device_report --sections speed --variants DRCT_x4 --budget-s 120

Sections: environment; exactness (ours vs spandrel, fp32, same weights and input, per family, at a
window multiple and an odd size); precision (bf16/fp16 PSNR vs our fp32 on a photo crop); speed per
variant at 256 and 512 px tiles (ms, output MP/s, TFLOP/s from counted FLOPs, % of the bf16 dense
peak, peak memory); end to end (1024 -> 4096 x4: our engine vs ComfyUI core's path); out of memory
for real (a memory cap makes the automatic tile fail; the run backs off and matches); out of
memory while the frame is blended on the GPU (an injected error; the run finishes and matches). Weights are
built in-process (see :mod:`benchmarks.device_models`); nothing is read from ``../shared``.
Every section and every measurement is guarded: a crash is recorded in the report and the run
continues (spandrel's own errors, e.g. its half-precision crashes, are table cells). After
``--budget-s`` seconds the remaining measurements are skipped and marked so.

What covers what, with the default ``--variants``:

* RGT, DRCT, ATD (``RGT_x4 RGT_S_x4 DRCT_x4 DRCT_L_x4 ATD_x4 ATD_light_x4``): exactness and
  precision for ``RGT_x4 DRCT_x4 ATD_x4 ATD_light_x4``; speed per tile at 256 and 512 px (about
  2 s of timed calls per measurement); end to end.
* HAT, DAT, SwinIR (``HAT_S_x4 HAT_x4 HAT_L_x4 DAT_x4 DAT_light_x4 DAT_2_x4 SwinIR_M_x4
  SwinIR_S_x4 SwinIR_L_real_x4``), measured lighter: exactness and precision for ``HAT_x4 DAT_x4
  SwinIR_M_x4``; speed per tile at 512 px only, about 0.5 s of timed calls per measurement; not
  end to end. Estimated (not yet measured on a GPU) to add about 1-1.5 min on one H200: nine
  builds on the CPU, and the nine take about 86 TFLOP per 512 px pass (counted on the official
  code at 64 px, scaled), the first six 63. A variant named in ``--variants`` gets
  the first group's treatment whatever its family (``--variants HAT_x4`` runs it end to end too).
* The out-of-memory sections: the trained ATD-light asset (the engine's back-off is the same for
  every family); ``--quick``: the reduced ATD-light x4.

Run order: the checks, then end to end, then speed per tile (whose last rows are the lighter
variants at 512 px), so a spent budget cuts those first.
Progress goes to stderr; the report to stdout and to ``--out``.

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
import re
import shlex
import sys
import time
import traceback

import torch

from .device_models import EXTRA_VARIANTS, REPO, VARIANTS, Pair, load_pair

BF16_PEAK_TFLOPS = 790.0  # H200 dense bf16 matmul
SECTION_KEYS = ["environment", "exactness", "precision", "speed", "end_to_end", "oom", "oom_device_blend"]


class Table:
    """Markdown table built row by row (rows survive a section that fails half way)."""

    def __init__(self, columns: list[str]):
        self.columns, self.rows = columns, []

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> list[str]:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        return lines + ["| " + " | ".join(r) + " |" for r in self.rows]


class Section:
    """A titled list of notes (paragraphs) and tables, in the order they were added."""

    def __init__(self, key: str, title: str):
        self.key, self.title, self.parts, self.status, self.seconds = key, title, [], "not run", 0.0

    def note(self, text: str) -> None:
        self.parts.append(text)

    def table(self, columns: list[str]) -> Table:
        t = Table(columns)
        self.parts.append(t)
        return t

    def render(self) -> list[str]:
        out = [f"## {self.title}", ""]
        for p in self.parts:
            out += (p.render() if isinstance(p, Table) else [p]) + [""]
        return out


class Context:
    """Settings of the run, the clock and budget, progress lines and the cache of loaded models."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.quick = args, args.quick
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and self.device.index is None:  # some CUDA calls want an explicit index
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.t0 = time.perf_counter()
        self._pairs: dict[str, Pair | Exception] = {}

    def light(self, variant: str) -> bool:
        """Measured lighter (see the module docstring): HAT, DAT, SwinIR unless ``--variants`` names them."""
        return variant in EXTRA_VARIANTS and not self.args.variants_named

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {msg}", file=sys.stderr, flush=True)

    def over_budget(self) -> bool:
        return self.elapsed() > self.args.budget_s

    def pair(self, name: str) -> Pair:
        """Ours and spandrel's descriptor of ``name`` (built once, kept on the CPU in fp32).

        A build that fails (either loader) raises its error here, and again for every later call
        without building again; sections record it as a cell (``build crash: ...``).
        """
        if name not in self._pairs:
            self.log(f"building {name}{' (quick: reduced config)' if self.quick else ''}")
            try:
                self._pairs[name] = p = load_pair(name, self.quick)
            except Exception as e:
                self._pairs[name] = e
                self.log(f"building {name} failed: {type(e).__name__}: {e}")
                raise
            self.log(f"built {name}: {p.params / 1e6:.2f} M parameters in {p.build_s:.1f}s")
        found = self._pairs[name]
        if isinstance(found, Exception):
            raise found
        return found

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> str:
        return f"{torch.cuda.max_memory_allocated(self.device) / 2**20:.0f}" if self.cuda else "-"

    def free(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def device_name(ctx: Context) -> str:
    return torch.cuda.get_device_name(ctx.device) if ctx.cuda else (platform.processor() or "cpu")


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
    t.add("numpy / scikit-image", f"{numpy.__version__} / {skimage.__version__}")
    t.add("python", platform.python_version())
    t.add("platform", platform.platform())
    t.add("peak used for %", f"{ctx.args.peak_tflops:g} TFLOP/s (bf16 dense)")
    t.add(
        "mode",
        "quick: tiny sizes, reduced configs (depth and width)" if ctx.quick else "full: official configs",
    )


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
    p.add_argument("--budget-s", type=float, default=420.0, help="skip what is left after this many seconds")
    p.add_argument(
        "--peak-tflops", type=float, default=BF16_PEAK_TFLOPS, help="bf16 dense peak for the %% column"
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=VARIANTS,
        help="default: all (HAT, DAT, SwinIR measured lighter); named ones get every section",
    )
    p.add_argument("--sections", nargs="+", default=None, choices=SECTION_KEYS, help="only these sections")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = p.parse_args(argv)
    args.variants_named = args.variants is not None
    if args.variants is None:
        args.variants = list(VARIANTS)
    return args


def default_out(ctx: Context) -> str:
    stamp = datetime.date.today().isoformat()
    name = f"{slug(device_name(ctx))}-{stamp}.md"
    if ctx.cuda and not ctx.quick:
        return os.path.join(REPO, "docs", "benchmarks", name)
    return os.path.join(REPO, "benchmarks", "results", f"device_report-{name}")


def main(argv: list[str] | None = None) -> str:
    """Run the report; returns the markdown (also printed and written to ``--out``)."""
    from . import device_sections as ds
    from . import device_speed as sp

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Context(args)
    # key, title, function; listed in report order, run in run_order (cheap, decisive checks first;
    # speed last: the budget cuts its last rows, the lighter variants', before anything else)
    sections = [
        ("environment", "Environment", environment),
        ("exactness", "Exactness: ours vs spandrel (fp32)", ds.exactness),
        ("precision", "Precision: bf16 / fp16 vs our fp32", ds.precision),
        ("speed", "Speed per tile", sp.speed),
        ("end_to_end", "End to end: one image x4, our engine vs ComfyUI core's path", sp.end_to_end),
        ("oom", "Out of memory for real", ds.out_of_memory),
        ("oom_device_blend", "Out of memory while blending on the device", ds.oom_device_blend),
    ]
    run_order = ["environment", "exactness", "precision", "oom", "oom_device_blend", "end_to_end", "speed"]
    secs = {key: Section(key, title) for key, title, _ in sections}
    funcs = {key: fn for key, _, fn in sections}
    for key in run_order:
        sec = secs[key]
        if args.sections is not None and key not in args.sections:
            sec.status = "not selected"
            sec.note("_Not selected (`--sections`)._")
            continue
        if ctx.over_budget():
            sec.status = "skipped: budget"
            sec.note(f"_Skipped: the time budget ({args.budget_s:g} s) was spent before this section._")
            continue
        ctx.log(f"section {key}")
        start = time.perf_counter()
        try:
            funcs[key](ctx, sec)
            sec.status = "ok"
        except Exception as e:  # one failing section must not lose the others
            sec.status = f"failed: {type(e).__name__}"
            tb = traceback.format_exc().strip().splitlines()[-12:]
            sec.note(f"**Section failed:** `{type(e).__name__}: {str(e)[:300]}`")
            sec.note("```\n" + "\n".join(tb) + "\n```")
            ctx.log(f"section {key} failed: {type(e).__name__}: {e}")
        finally:
            ctx.free()
        sec.seconds = time.perf_counter() - start
        ctx.log(f"section {key}: {sec.status} in {sec.seconds:.1f}s")

    command = "python -m benchmarks.device_report " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    lines = [
        f"# Device report: {device_name(ctx)}, {datetime.date.today().isoformat()}",
        "",
        f"Command: `{command.strip()}`  ",
        f"Commit: {_git_commit()}; total {ctx.elapsed():.0f} s (budget {args.budget_s:g} s)"
        + (
            "; **quick mode: tiny sizes, reduced configs (depth and width), numbers are smoke values**"
            if ctx.quick
            else ""
        ),
        "",
    ]
    for key, _, _ in sections:
        lines += secs[key].render()
    run = Section("run", "Run")
    t = run.table(["section", "status", "seconds"])
    for key in run_order:
        t.add(key, secs[key].status, f"{secs[key].seconds:.1f}")
    lines += run.render()
    report = "\n".join(lines)
    out = args.out or default_out(ctx)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(report)
    print(report, flush=True)
    ctx.log(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
