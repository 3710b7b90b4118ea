"""Images per second of ``python -m cli upscale`` with 1 process vs N workers, on the same folder.

    python -m benchmarks.bench_scaleout                          # CPU: 1 process, 2 CPU workers, Ray 2 actors
    python -m benchmarks.bench_scaleout --images 32 --size 96 --workers 4
    python -m benchmarks.bench_scaleout --devices all --no-ray    # a GPU machine: one worker per GPU

"1 process" and every worker use ``--threads`` CPU threads (default 1), so their files must be
byte-identical; "1 process, all cores" is the CPU's alternative to workers (fp32 sums split by
thread can move an 8-bit value by one, so its bytes may differ). Each configuration runs the real command (in this process; workers and Ray actors in their own)
on one folder of photo crops (scikit-image's astronaut, chelsea, coffee) into a fresh output
folder, and checks that every configuration wrote the same bytes as the single process. Wall
time includes starting the workers (and Ray) and loading the model in each, as a user sees it;
"per image" is wall time over images. Prints a table and writes a CSV under
``benchmarks/results/``. Run from the repository root.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np
from PIL import Image

from .common import REPO, import_pack, print_table

PHOTOS = ("astronaut", "chelsea", "coffee")


def write_photos(folder: str, count: int, size: int) -> None:
    """``count`` crops of ``size`` px from scikit-image's photos, as PNG files."""
    from skimage import data

    photos = [getattr(data, name)() for name in PHOTOS]
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        y, x = (int(rng.integers(0, d - size)) for d in photo.shape[:2])
        Image.fromarray(photo[y : y + size, x : x + size]).save(os.path.join(folder, f"crop_{i:04d}.png"))


def run_once(argv: list[str]) -> float:
    """Seconds the command takes; raises if it fails."""
    from srt.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    code = main(argv, out=out, err=err)
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({code}): {err.getvalue().strip()[-500:]}")
    return seconds


def folder_bytes(folder: str) -> dict[str, bytes]:
    return {
        n: open(os.path.join(folder, n), "rb").read()
        for n in sorted(os.listdir(folder))
        if n.endswith(".png")
    }


def main(argv: list[str] | None = None) -> None:
    import_pack()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--size", type=int, default=64, help="side of each crop in pixels")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped x4 default model)")
    p.add_argument("--workers", type=int, default=2, help="CPU workers / Ray actors to compare with 1")
    p.add_argument(
        "--devices", default=None, help="--devices value for the worker run (default: cpu x workers)"
    )
    p.add_argument("--no-ray", action="store_true", help="skip the Ray configuration")
    p.add_argument("--tile", type=int, default=256, help="fixed tile (auto tiles depend on free memory)")
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads per process (same in every run: same bytes)"
    )
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the local Ray this starts needs no token

    devices = args.devices or ",".join(["cpu"] * args.workers)
    workers = len(devices.split(",")) if devices != "all" else "all GPUs"
    model = ["--model", args.model] if args.model else []
    configs = [("1 process", [], 1), (f"--devices {devices}", ["--devices", devices], workers)]
    if "cpu" in devices:  # the CPU's real alternative: one process using every core
        configs.insert(1, ("1 process, all cores", ["--threads", "0"], 1))
    if not args.no_ray:
        device = "cpu" if "cuda" not in devices and devices != "all" and not devices[0].isdigit() else "auto"
        ray = ["--ray", "--concurrency", str(args.workers), "--device", device]
        configs.append((f"--ray (local, {args.workers} actors)", ray, args.workers))
    rows, reference = [], None
    with tempfile.TemporaryDirectory(prefix="srt-bench-scaleout-") as work:
        photos = os.path.join(work, "in")
        os.makedirs(photos)
        write_photos(photos, args.images, args.size)
        for name, extra, count in configs:
            out = os.path.join(work, f"out{len(rows)}")
            fixed = ["--tile", str(args.tile), "--threads", str(args.threads)]
            seconds = run_once(["upscale", photos, "-o", out, "-q", *model, *fixed, *extra])
            written = folder_bytes(out)
            reference = reference or written
            same = "yes" if written == reference else "NO"
            if "--threads" in extra:
                same += " (other thread count)" if same == "NO" else ""
            rows.append(
                {
                    "configuration": name,
                    "workers": count,
                    "images": args.images,
                    "size": f"{args.size}x{args.size}",
                    "wall s": f"{seconds:.1f}",
                    "images/s": f"{args.images / seconds:.2f}",
                    "vs 1 process": f"{float(rows[0]['wall s']) / seconds:.2f}x" if rows else "1.00x",
                    "same bytes": same,
                }
            )
    csv_path = args.csv or os.path.join(REPO, "benchmarks", "results", "bench_scaleout.csv")
    print(f"cpu count {os.cpu_count()}, model {args.model or 'default x4'}")
    print_table(rows, csv_path)


if __name__ == "__main__":
    main()
