"""Half precision, ours vs spandrel: PSNR of bf16/fp16 against the same model's fp32 on a photo crop.

    python -m benchmarks.bench_half                              # DAT, SwinIR, HAT releases, 32 px, CPU
    python -m benchmarks.bench_half --variants HAT_x4 --size 64 --device cuda

Weights: the official configs with the official initialisation (``tests/<family>_variants.py``,
trained-like scale), the ones the family tests use. For each variant and precision the table has
our PSNR (dB, peak 1, raw outputs) against our fp32, and spandrel's against its fp32 together with
the flag spandrel's descriptor sets (``supports_half`` / ``supports_bfloat16``: what ComfyUI and
chaiNNer read before they convert a model). "non-finite" is a NaN/inf output (a black image once
saved), "error" an exception. Half convolutions are slow on the CPU: keep ``--size`` small there.
"""

from __future__ import annotations

import argparse
import copy
import os

import torch

from .bench_models import FAMILY_DEFAULTS, state_dict_for
from .common import REPO, import_pack, print_table, psnr

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
FLAG = {"bf16": "supports_bfloat16", "fp16": "supports_half"}


def _half_psnr(model: torch.nn.Module, x: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> str:
    """``model`` in ``dtype`` against ``ref`` (its fp32 output), as a table cell."""
    try:
        with torch.inference_mode():
            out = copy.deepcopy(model).to(dtype)(x.to(dtype)).float()
    except Exception as e:  # spandrel's half-precision crashes are part of the table
        return f"error ({type(e).__name__})"
    if not torch.isfinite(out).all():
        return "non-finite"
    return f"{psnr(out, ref):.1f}"


def main(argv: list[str] | None = None) -> None:
    import_pack()
    from spandrel import MAIN_REGISTRY

    import srt.arch as arch
    from srt.tests.model_helpers import load_oracle, photo_crop

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=FAMILY_DEFAULTS)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    oracle = load_oracle()
    device = torch.device(args.device)
    x = photo_crop("astronaut", 100, 150, args.size, args.size).to(device)
    rows = []
    for variant in args.variants:
        sd = state_dict_for(variant, oracle)
        ours = arch.load_state_dict(dict(sd))
        theirs = MAIN_REGISTRY.load(dict(sd))
        row = {"variant": variant, "size": args.size, "device": args.device}
        for name, model in (("ours", ours), ("spandrel", theirs)):
            module = model.model.eval().to(device)
            with torch.inference_mode():
                ref = module(x).float()
            for half, dtype in HALF.items():
                cell = _half_psnr(module, x, ref, dtype)
                if name == "spandrel":
                    cell += "" if getattr(model, FLAG[half]) else " (flagged off)"
                row[f"{name}_{half}_dB"] = cell
        rows.append(row)
        print(row, flush=True)
    print()
    csv_path = args.csv or os.path.join(REPO, "benchmarks", "results", f"half_{args.device}_{args.size}.csv")
    print_table(rows, csv_path)


if __name__ == "__main__":
    main()
