"""Ours vs spandrel on the same weights and the same input, in one run.

    python -m benchmarks.bench_models                      # default variants, 128x128, fp32, CPU
    python -m benchmarks.bench_models --variants DRCT_x4 ATD_x4 --size 128 --repeats 3
    python -m benchmarks.bench_models --device cuda --dtype bf16 --size 512
    python -m benchmarks.bench_models --compile --variants SwinIR_S_x4   # + ours through torch.compile

Weights come from ``../shared/oracle`` (deterministic recipe of the official configs) for RGT,
DRCT and ATD, and from ``tests/<family>_variants.py`` (spandrel's modules of the official configs
with the official initialisation) for DAT, SwinIR and HAT. Ours and
spandrel run alternately, best of ``--repeats``. Prints a table (forward seconds, speed-up, max abs
difference, peak CUDA memory) and writes a CSV under ``benchmarks/results/``. spandrel crashes in
bf16/fp16 for some families; that shows as "error". Run from the repository root.

``--compile`` also times our model compiled as the engine compiles it (inductor,
``torch.compile(type(m).forward, dynamic=False, fullgraph=True)`` called as ``f(m, x)`` after the
eager call that builds the geometry cache; CUDA graphs on CUDA): seconds per tile after warm-up
(best of ``--repeats``, alternating with eager and spandrel), the compile seconds (first compiled
call minus a steady one), the speed-up over our eager path (oneDNN fused linears on the CPU in
fp32) and the largest difference compiled vs eager (``compiled_diff``). ``best_speedup`` is
spandrel's time over the faster of ours; the CSV gets a ``_compiled`` suffix.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch

from .common import REPO, import_pack, print_table, time_call

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# The official releases of the families without oracle goldens (also bench_half's defaults).
FAMILY_DEFAULTS = [
    "DAT_x4",
    "DAT_S_x4",
    "DAT_2_x4",
    "DAT_light_x4",
    "SwinIR_M_x4",
    "SwinIR_S_x4",
    "SwinIR_L_real_x4",
    "HAT_S_x4",
    "HAT_x4",
    "HAT_L_x4",
]
DEFAULT_VARIANTS = ["RGT_S_x4", "RGT_x4", "DRCT_x4", "ATD_x4", "ATD_light_x4", *FAMILY_DEFAULTS]
COMPILED_FP32_BOUND = 1e-4  # largest fp32 difference compiled vs eager that is only float reordering
# Families without oracle goldens: the official configs built by spandrel with the official
# initialisation (tests/<family>_variants.py, the weights their tests use).
FAMILY_VARIANTS = ("dat_variants", "swinir_variants", "hat_variants")


def state_dict_for(variant: str, oracle) -> dict:
    """The weights of ``variant``: the oracle's recipe, else a family's ``tests/<family>_variants.py``."""
    if variant in oracle.list_variants():
        return oracle.make_state_dict(variant)
    import importlib

    for name in FAMILY_VARIANTS:
        module = importlib.import_module(f"srt.tests.{name}")
        if variant in module.VARIANTS:
            return module.make_state_dict(variant)
    raise SystemExit(f"unknown variant {variant!r}: see the oracle's list_variants() and tests/*_variants.py")


def _peak_mib(device: torch.device) -> float:
    """Peak CUDA memory since the last call (0 on CPU), then reset the counter."""
    if device.type != "cuda":
        return 0.0
    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return peak


def compiled_forward(model: torch.nn.Module, x: torch.Tensor) -> tuple[Callable[[], torch.Tensor], float]:
    """``model`` compiled as the engine compiles it, as a call on ``x``, and the first call's seconds.

    Call after one eager forward at ``x``'s shape (that fills the geometry cache the graph reads).
    On CUDA the graph replays as a CUDA graph; each call starts a new step and clones its output
    (the next replay overwrites the static one).
    """
    from srt.engine.compiled import CUDA_GRAPHS, compile_mode

    mode = compile_mode("inductor", x.device)
    options = {"mode": mode} if mode is not None else {}
    forward = torch.compile(type(model).forward, dynamic=False, fullgraph=True, **options)

    def call() -> torch.Tensor:
        if mode == CUDA_GRAPHS:
            torch.compiler.cudagraph_mark_step_begin()
            return forward(model, x).clone()
        return forward(model, x)

    return call, time_call(call, 1, warmup=0)


def main(argv: list[str] | None = None) -> None:
    import_pack()
    import srt.arch as arch
    from srt.tests.model_helpers import load_oracle, max_abs, photo_crop, spandrel_reference

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--compile", action="store_true", help="also time ours through torch.compile (inductor)")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    oracle = load_oracle()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    x = photo_crop("astronaut", 100, 150, args.size, args.size).to(device, dtype)
    rows = []
    for variant in args.variants:
        sd = state_dict_for(variant, oracle)
        ours = arch.load_state_dict(dict(sd)).model.eval().to(device, dtype)
        ref = spandrel_reference(sd).to(device, dtype)
        row = {"variant": variant, "size": args.size, "dtype": args.dtype, "device": args.device}
        with torch.inference_mode():
            y_ours = ours(x).float()  # also the warm-up, and the geometry the compiled graph reads
            try:
                y_ref = ref(x).float()
                diff = f"{max_abs(y_ours, y_ref):.2e}"
            except Exception as e:  # spandrel's half-precision crashes are part of the table
                ref, diff = None, f"spandrel error: {type(e).__name__}"
            if args.compile:
                fast, first = compiled_forward(ours, x)
                compiled_diff = max_abs(fast().float(), y_ours)
                if dtype == torch.float32 and compiled_diff > COMPILED_FP32_BOUND:
                    print(
                        f"warning: {variant} compiled differs from eager by {compiled_diff:.2e}", flush=True
                    )
            # Alternate ours/compiled/spandrel and keep the best of N, so a load spike cannot land on one side.
            _peak_mib(device)  # forget the warm-up peaks
            t_ours, t_fast, t_ref, mem_ours, mem_ref = [], [], [], 0.0, 0.0
            for _ in range(args.repeats):
                t_ours.append(time_call(lambda m=ours: m(x), 1, warmup=0))
                mem_ours = max(mem_ours, _peak_mib(device))
                if args.compile:
                    t_fast.append(time_call(fast, 1, warmup=0))
                    _peak_mib(device)
                if ref is not None:
                    t_ref.append(time_call(lambda m=ref: m(x), 1, warmup=0))
                    mem_ref = max(mem_ref, _peak_mib(device))
        t_ours = min(t_ours)
        ref_s = f"{min(t_ref):.3f}" if t_ref else "error"
        if args.compile:
            t_fast, best = min(t_fast), min(t_ours, min(t_fast))
            row.update(
                ours_s=f"{t_ours:.3f}",
                compiled_s=f"{t_fast:.3f}",
                compiled_speedup=f"{t_ours / t_fast:.2f}x",
                spandrel_s=ref_s,
                best_speedup=f"{min(t_ref) / best:.2f}x" if t_ref else "-",
                compile_s=f"{max(0.0, first - t_fast):.1f}",
                max_abs_diff=diff,
                compiled_diff=f"{compiled_diff:.2e}",
            )
        else:
            speedup = f"{min(t_ref) / t_ours:.2f}x" if t_ref else "-"
            row.update(ours_s=f"{t_ours:.3f}", spandrel_s=ref_s, speedup=speedup, max_abs_diff=diff)
        if device.type == "cuda":
            row.update(ours_peak_MiB=f"{mem_ours:.0f}", spandrel_peak_MiB=f"{mem_ref:.0f}" if t_ref else "-")
        rows.append(row)
        print(row, flush=True)
    print()
    csv_path = args.csv or os.path.join(
        REPO,
        "benchmarks",
        "results",
        f"models_{args.device}_{args.dtype}_{args.size}{'_compiled' * args.compile}.csv",
    )
    print_table(rows, csv_path)


if __name__ == "__main__":
    main()
