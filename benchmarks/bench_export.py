"""Exported ONNX in onnxruntime (and OpenVINO) against our torch model, eager and compiled, per family.

    python -m benchmarks.bench_export                          # one variant per family, 64 px, fp32, CPU
    python -m benchmarks.bench_export --size 128 --variants SwinIR_S_x4 DAT_light_x4
    python -m benchmarks.bench_export --no-compile             # skip torch.compile (minutes per model on a CPU)

Each variant (full-size official configs: oracle weights for RGT/DRCT/ATD, the official
initialisation for HAT/DAT/SwinIR and the nhs2828 RGT) is loaded as the loader loads it, exported
as the command line does (``arch.export_onnx``, fixed tile = ``--size``, fp32), and the same photo
crop runs through our eager module (oneDNN's fused CPU linears), our module compiled with inductor
as the engine compiles it, onnxruntime's CPU provider and, where ``pip install openvino`` worked,
OpenVINO's CPU plugin (``INFERENCE_PRECISION_HINT=f32``). All with the same number of threads
(``--threads``; default: torch's); best of ``--repeats`` after a warm-up, the runtimes alternating
so a load spike cannot land on one. ``vs eager``: eager seconds over the fastest runtime's. Max abs:
each runtime's output against eager. Prints a table and writes a CSV under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from .bench_models import compiled_forward, state_dict_for
from .common import REPO, import_pack, print_table, time_call

DEFAULT_VARIANTS = [
    "RGT_S_x4",
    "RGT_nhs2828_x2",
    "DRCT_x4",
    "ATD_light_x4",
    "HAT_S_x4",
    "DAT_light_x4",
    "SwinIR_S_x4",
]
NHS2828 = "RGT_nhs2828_x2"  # upstream's x2 model (its only release config), official initialisation


def load_variant(variant: str, oracle):
    """The descriptor of ``variant`` as ``arch.load_state_dict`` builds it."""
    import srt.arch as arch

    if variant == NHS2828:
        from srt.arch.rgt_nhs2828 import NHS2828RGT
        from srt.tests.model_helpers import official_init

        sd = official_init(NHS2828RGT().eval())
    else:
        sd = state_dict_for(variant, oracle)
    return arch.load_state_dict(dict(sd))


def ort_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def openvino_model(path: str, threads: int):
    """OpenVINO's compiled model of the file, or None where OpenVINO is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    return ov.Core().compile_model(path, "CPU", config)


def _max_abs(a: np.ndarray, b: torch.Tensor) -> str:
    return f"{float(np.abs(a - b.numpy()).max()):.1e}"


def bench(variant: str, oracle, x: torch.Tensor, args, folder: str) -> dict:
    from srt.arch.export import export_onnx

    desc = load_variant(variant, oracle)
    model = desc.model.eval()
    threads = torch.get_num_threads()
    with torch.inference_mode():
        expected = model(x).float()  # the warm-up too: the geometry the compiled graph reads
    start = time.perf_counter()
    path = os.path.join(folder, f"{variant}.onnx")
    export_onnx(desc, path, tile=args.size)
    export_s = time.perf_counter() - start
    session = ort_session(path, threads)
    feed = {"input": x.numpy()}
    ort_out = session.run(["output"], feed)[0]
    vino = openvino_model(path, threads)
    calls = {"eager": lambda: model(x)}
    if args.compile:
        with torch.inference_mode():
            fast, first = compiled_forward(model, x)
            compiled_out = fast().float()
        calls["compiled"] = fast
    calls["onnxruntime"] = lambda: session.run(["output"], feed)
    if vino is not None:
        vino_out = vino(feed)[vino.output(0)]
        calls["openvino"] = lambda: vino(feed)
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, call in calls.items():
                times[name].append(time_call(call, 1, warmup=0))
    best = {name: min(t) for name, t in times.items()}
    runtimes = [n for n in best if n != "eager"]
    fastest = min(runtimes, key=best.get)
    row = {
        "variant": variant,
        "eager s": f"{best['eager']:.3f}",
        "compiled s": f"{best['compiled']:.3f}" if args.compile else "-",
        "onnxruntime s": f"{best['onnxruntime']:.3f}",
        "openvino s": f"{best['openvino']:.3f}" if vino is not None else "not installed",
        "fastest vs eager": f"{fastest} {best['eager'] / best[fastest]:.2f}x",
        "export s": f"{export_s:.0f}",
        "compile s": f"{max(0.0, first - best['compiled']):.0f}" if args.compile else "-",
        "ort max abs": _max_abs(ort_out, expected),
        "openvino max abs": _max_abs(vino_out, expected) if vino is not None else "-",
    }
    if args.compile:
        row["compiled max abs"] = _max_abs(compiled_out.numpy(), expected)
    return row


def main(argv: list[str] | None = None) -> None:
    import_pack()
    from srt.tests.model_helpers import load_oracle, photo_crop

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--size", type=int, default=64, help="tile side (the export's fixed size)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads of every runtime (0: torch's)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    oracle = load_oracle()
    x = photo_crop("astronaut", 100, 150, args.size, args.size)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for variant in args.variants:
            row = bench(variant, oracle, x, args, folder)
            rows.append(row)
            print(row, flush=True)
    print()
    csv_path = args.csv or os.path.join(REPO, "benchmarks", "results", f"export_cpu_{args.size}.csv")
    print_table(rows, csv_path)


if __name__ == "__main__":
    main()
