"""The default models against bicubic and Lanczos on held-out photos: a printed table.

    python -m training.evaluate                      # the shipped weights/ files, x2 and x4
    python -m training.evaluate --run                # the training runs' current EMA weights
    python -m training.evaluate --x2 a.safetensors --x4 b.safetensors

Protocol: each held-out photo (:data:`training.data.HELD_OUT`, used neither for training nor by
the tests) is cropped to a multiple of the scale; its low-resolution input is the training
degradation (antialiased bicubic, rounded to 8 bits). Our model runs in float32 on the CPU
through the pack's loader; bicubic and Lanczos upscale the same 8-bit input with Pillow
(``Image.BICUBIC``, Keys a = -0.5 as MATLAB; ``Image.LANCZOS``, 3 lobes). Scores are PSNR on
BT.601 luma of 8-bit pixels with ``scale`` pixels cropped from every border
(:func:`srt.engine.metrics.measure`), the convention of the SR papers.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
from PIL import Image

from . import RUNS, import_pack
from .data import bicubic_down, crop_to_multiple, held_out_images
from .recipe import shipped_path

SCALES = (2, 4)


def pil_upscale(lr: torch.Tensor, scale: int, method: int) -> torch.Tensor:
    """``(1, 3, h, w)`` 8-bit-valued floats -> Pillow upscale by ``scale``, same layout."""
    pixels = (lr[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    big = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), method)
    return torch.from_numpy(np.asarray(big).astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def y_psnr(test: torch.Tensor, target: torch.Tensor, scale: int) -> float:
    """Luma PSNR (8-bit, border ``scale`` cropped) of two ``(1, 3, H, W)`` images in [0, 1]."""
    from srt.engine.metrics import measure

    return measure(test.permute(0, 2, 3, 1), target.permute(0, 2, 3, 1), "y", border=scale).psnr[0]


def upscale_all(model: torch.nn.Module, hr: torch.Tensor, scale: int) -> dict[str, torch.Tensor]:
    """Ours, bicubic and Lanczos outputs for the degraded ``hr`` (``(1, 3, H, W)``)."""
    lr = bicubic_down(hr, scale)
    with torch.no_grad():
        ours = model(lr).clamp(0, 1)
    return {
        "ours": ours,
        "bicubic": pil_upscale(lr, scale, Image.BICUBIC),
        "lanczos": pil_upscale(lr, scale, Image.LANCZOS),
    }


def evaluate(paths: dict[int, str]) -> list[dict]:
    """One row per (scale, photo) plus a mean row per scale."""
    from srt.arch import load_model

    rows = []
    photos = held_out_images()
    for scale, path in paths.items():
        model = load_model(path).model.eval()
        per_scale = []
        for name, img in photos:
            hr = crop_to_multiple(img.unsqueeze(0), scale)
            scores = {k: y_psnr(v, hr, scale) for k, v in upscale_all(model, hr, scale).items()}
            per_scale.append(scores)
            rows.append(_row(scale, name, scores))
        mean = {k: math.fsum(s[k] for s in per_scale) / len(per_scale) for k in per_scale[0]}
        rows.append(_row(scale, "mean", mean))
    return rows


def _row(scale: int, name: str, scores: dict[str, float]) -> dict:
    return {
        "scale": f"x{scale}",
        "photo": name,
        "ours": f"{scores['ours']:.2f}",
        "bicubic": f"{scores['bicubic']:.2f}",
        "lanczos": f"{scores['lanczos']:.2f}",
        "ours - bicubic": f"{scores['ours'] - scores['bicubic']:+.2f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="store_true", help="evaluate training/runs/x*/ema.safetensors")
    parser.add_argument("--x2", help="x2 model file (default: the shipped one)")
    parser.add_argument("--x4", help="x4 model file (default: the shipped one)")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    args = parser.parse_args()
    import_pack()
    from srt.benchmarks.common import print_table

    torch.set_num_threads(1)
    paths = {}
    for scale in SCALES:
        given = getattr(args, f"x{scale}")
        path = given or (
            os.path.join(RUNS, f"x{scale}", "ema.safetensors") if args.run else shipped_path(scale)
        )
        if os.path.isfile(path):
            paths[scale] = path
        else:
            print(f"x{scale}: {path} not found, skipped")
    print("Luma PSNR (dB), 8-bit, border = scale cropped; held-out photos: scikit-learn's sample images\n")
    print_table(evaluate(paths), args.csv)


if __name__ == "__main__":
    main()
