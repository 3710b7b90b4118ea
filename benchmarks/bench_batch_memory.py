"""Peak host RAM for a long batch (video frames): our engine vs ComfyUI core's upscale path.

    python -m benchmarks.bench_batch_memory                         # 300 frames 128x128, x4
    python -m benchmarks.bench_batch_memory --frames 300 --size 256 --dtypes float32 float16

Each path runs in a fresh subprocess on the same random batch and the same model (a small
random-weight Compact x4, so the model's own memory is negligible and the output dominates).
``peak`` is the process's peak resident memory during the run minus its resident memory just
before (input batch and model in place, the model called once so its kernels are loaded), read from ``/proc/self/status`` after resetting
the peak with ``/proc/self/clear_refs``. ``output`` is the size of the returned IMAGE batch, so
``extra = peak - output`` is what the run needed beyond its result. Our path also runs on one
frame: its ``extra`` is one frame's working set, the bound for a batch of any length. Core's path is :func:`benchmarks.bench_tiling.core_tiled_scale` (what
``comfy.utils.tiled_scale`` does) followed by the node's clamp and ``.to(intermediate_dtype())``.
Linux only. Writes a CSV under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _worker(path: str, frames: int, size: int, dtype: torch.dtype) -> dict:
    from spandrel.architectures.Compact import Compact

    from benchmarks.bench_tiling import core_tiled_scale
    from benchmarks.common import import_pack

    import_pack()
    import srt.arch as arch
    import srt.engine.runner as runner

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=4, act_type="prelu")
    desc = arch.load_state_dict(net.state_dict()).eval()
    image = torch.rand(frames, size, size, 3)
    with torch.inference_mode():  # load the kernels' code pages before measuring, for both paths
        desc(image[:1].movedim(-1, -3))
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current resident size
    before = _rss("VmRSS")
    t0 = time.perf_counter()
    if path == "ours":
        host = runner.Host(output_dtype=dtype)
        out = runner.upscale(desc, image, runner.Settings(tile=0, overlap=32, precision="fp32"), host).image
    else:
        with torch.inference_mode():
            s = core_tiled_scale(image.movedim(-1, -3), lambda a: desc(a), 512, 32, 4)
        out = torch.clamp(s.movedim(-3, -1), min=0, max=1.0).to(dtype)
        del s
    seconds = time.perf_counter() - t0
    peak = _rss("VmHWM") - before
    return {"peak": peak, "output": out.numel() * out.element_size(), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", type=int, default=128, help="frame side in pixels (output is 4x)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float16"], help="IMAGE output dtypes")
    p.add_argument("--worker", nargs=2, metavar=("PATH", "DTYPE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if a.worker:
        path, dtype = a.worker
        print(json.dumps(_worker(path, a.frames, a.size, getattr(torch, dtype))))
        return

    from benchmarks.common import print_table

    mib = 2**20
    rows = []
    for dtype in a.dtypes:
        for path, frames in (("ours", 1), ("ours", a.frames), ("core", a.frames)):
            cmd = [sys.executable, "-m", "benchmarks.bench_batch_memory", "--frames", str(frames)]
            cmd += ["--size", str(a.size), "--worker", path, dtype]
            r = json.loads(subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout)
            rows.append(
                {
                    "path": path,
                    "image_dtype": dtype,
                    "batch": f"{frames}x{a.size}^2 -> x4",
                    "output_MiB": round(r["output"] / mib, 1),
                    "peak_MiB": round(r["peak"] / mib, 1),
                    "extra_MiB": round((r["peak"] - r["output"]) / mib, 1),
                    "seconds": round(r["seconds"], 1),
                }
            )
    print_table(rows, os.path.join(REPO, "benchmarks", "results", "batch_memory.csv"))
    print("\nextra = peak - output; the 1-frame row's extra is one frame's working set")


if __name__ == "__main__":
    main()
