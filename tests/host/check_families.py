"""Real-host checks for HAT, DAT and SwinIR: official-layout checkpoints in a real ComfyUI.

    SRT_HOST_HOME=~/.cache/srt-host      .venv/bin/python tests/host/check_families.py   # 0.3.64
    SRT_HOST_HOME=~/.cache/srt-host-new  .venv/bin/python tests/host/check_families.py   # 0.33

Not collected by pytest (needs a host, see ``../shared/host/README.md``). For each of HAT-S,
DAT-light and SwinIR-S (x2, the official configs with the official initialisation, written as
BasicSR ``.pth`` files as the releases are: ``{"params": state_dict}``): GET /srt/model_info names the
family and variant; Super Resolution Model Loader -> Super Resolution Upscale (tiled) in fp32 saves the image spandrel's
copy of the official code gives on the same weights (computed here, in this process, from the
same PNG: at most one 8-bit level apart); core "Upscale Image (using Model)" fed by Super Resolution Model Loader
gives it too; fp16 and bf16 runs finish with an image within 40 dB of fp32 (spandrel flags fp16
off for all three, and its SwinIR crashes in both). Prints one line per check, exits 1 if any failed.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import urllib.parse

import numpy as np
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(REPO), "shared", "host"))
sys.path.insert(0, REPO)
import comfy_harness as ch  # noqa: E402
from check_host import check, ours, photo, pixels, results  # noqa: E402

# (file name, tests/<module>, variant, what Super Resolution Model Loader must name)
MODELS = [
    ("HAT-S_SRx2.pth", "hat_variants", "HAT_S_x2", "HAT-S"),
    ("DAT_light_x2.pth", "dat_variants", "DAT_light_x2", "DAT-light"),
    ("002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth", "swinir_variants", "SwinIR_S_x2", "SwinIR"),
]


def write_checkpoints(folder: str) -> dict[str, torch.nn.Module]:
    """The checkpoint files, and spandrel's module of each (the reference) by file name."""
    from cli import register_pack

    register_pack()
    refs = {}
    for filename, module, variant, _ in MODELS:
        variants = importlib.import_module(f"srt.tests.{module}")
        reference = variants.spandrel_module(variant)
        torch.save({"params": dict(reference.state_dict())}, os.path.join(folder, filename))
        refs[filename] = reference.eval()
    return refs


def reference_png(module: torch.nn.Module, path: str) -> np.ndarray:
    """spandrel's module on the PNG at ``path``, as the 8-bit RGB image ComfyUI would save."""
    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
    with torch.inference_mode():
        y = module(x.permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0)
    return np.clip(np.round(y.numpy() * 255.0), 0, 255).astype(np.int16)


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> int:
    folder = tempfile.mkdtemp(prefix="srt_families_")
    refs = write_checkpoints(folder)
    paths = [os.path.join(folder, m[0]) for m in MODELS]
    h = ch.start([REPO], models={"upscale_models": paths})
    try:
        ch.nodes(h)
        version = ch._http(h, "GET", "/system_stats")[1]["system"].get("comfyui_version")
        print(f"host: ComfyUI {version} at {ch.comfyui_dir()}")
        check(not ch.import_errors(h), "pack imports clean")
        src = photo(os.path.join(h.workdir, "in.png"), 40, 32, 1)
        img = ch.upload_image(h, src)
        for filename, _, _, label in MODELS:
            st, body = ch._http(h, "GET", "/srt/model_info?name=" + urllib.parse.quote(filename))
            text = body.get("text", "") if isinstance(body, dict) else str(body)
            check(st == 200 and label in text, f"{filename}: model_info names {label} ({st}: {text[:80]!r})")
            expected = reference_png(refs[filename], src)
            runs = {}
            for precision in ("fp32", "fp16", "bf16"):
                r = ch.run(h, ours(img, filename, f"{label}_{precision}", precision=precision), timeout=900)
                ok = r["status"] == "success" and r["outputs"]
                check(
                    ok,
                    f"{filename}: Super Resolution Model Loader -> Super Resolution Upscale (tiled) {precision}: {r['status']} {r['errors']}",
                )
                if ok:
                    runs[precision] = pixels(r["outputs"][0])
            if "fp32" in runs:
                got = runs["fp32"]
                same_shape = got.shape == expected.shape
                diff = int(np.abs(got - expected).max()) if same_shape else -1
                check(
                    same_shape and diff <= 1,
                    f"{filename}: fp32 = the official code's image (max 8-bit diff {diff})",
                )
                for half in ("fp16", "bf16"):
                    if half in runs:
                        db = psnr8(runs[half], got)
                        check(db >= 40.0, f"{filename}: {half} image {db:.1f} dB from fp32")
            core = ch.run(
                h,
                {
                    "1": {"class_type": "LoadImage", "inputs": {"image": img}},
                    "2": {"class_type": "SRT_LoadModel", "inputs": {"model_name": filename}},
                    "3": {
                        "class_type": "ImageUpscaleWithModel",
                        "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
                    },
                    "4": {
                        "class_type": "SaveImage",
                        "inputs": {"images": ["3", 0], "filename_prefix": f"core_{label}"},
                    },
                },
                timeout=900,
            )
            ok = core["status"] == "success" and core["outputs"]
            diff = int(np.abs(pixels(core["outputs"][0]) - expected).max()) if ok else -1
            check(
                ok and 0 <= diff <= 1,
                f"{filename}: core Upscale Image (using Model) <- Super Resolution Model Loader: {core['status']}, max 8-bit diff {diff}",
            )
    finally:
        ch.stop(h)
    failed = [what for ok, what in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
