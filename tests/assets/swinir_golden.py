"""Writes ``swinir_golden.safetensors``: tiny SwinIR models with spandrel's outputs on photo crops.

    .venv/bin/python tests/assets/swinir_golden.py

For each config in ``GOLDEN`` the file holds ``<name>.weights.<key>`` (every learned tensor, drawn
by the oracle's deterministic recipe so biases and norms are not trivially 0 and 1),
``<name>.input`` (a photo crop whose sides are not window multiples) and ``<name>.output``
(spandrel's SwinIR, i.e. the official code, on that input). The safetensors metadata holds the
constructor arguments as JSON under ``configs``. tests/test_swinir.py loads the weights through our
registry and must reproduce the outputs: a fixed reference, independent of the installed spandrel.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "swinir_golden.safetensors")

# Every body feature and two reconstructions: shifted windows over two groups, one-step
# pixel-shuffle x3 (RGB); 7 px windows, 3conv, no upsampler, inputs in [0, 255] (grayscale JPEG).
GOLDEN = {
    "direct_x3": dict(
        embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4, mlp_ratio=2.0, upscale=3, img_size=16,
        upsampler="pixelshuffledirect", resi_connection="1conv", in_chans=3, img_range=1.0,
    ),
    "jpeg_w7": dict(
        embed_dim=16, depths=[2], num_heads=[2], window_size=7, mlp_ratio=2.0, upscale=1, img_size=14,
        upsampler="", resi_connection="3conv", in_chans=1, img_range=255.0,
    ),
}  # fmt: skip
# (photo, top, left, height, width) of each input crop
CROPS = {"direct_x3": ("astronaut", 120, 160, 13, 17), "jpeg_w7": ("coffee", 150, 230, 15, 11)}


def main() -> None:
    sys.path.insert(0, os.path.dirname(HERE))  # tests/, for model_helpers
    from model_helpers import load_oracle, photo_crop, with_recipe_weights
    from spandrel.architectures.SwinIR import SwinIR

    torch.set_num_threads(1)
    oracle = load_oracle()
    tensors = {}
    for name, config in GOLDEN.items():
        model = SwinIR(**config).eval()
        sd = with_recipe_weights(model, oracle)
        model.load_state_dict(sd)
        x = photo_crop(*CROPS[name])[:, : config["in_chans"]].contiguous()
        with torch.inference_mode():
            y = model(x)
        learned = {k for k, _ in model.named_parameters()}
        tensors.update({f"{name}.weights.{k}": v.contiguous() for k, v in sd.items() if k in learned})
        tensors[f"{name}.input"] = x
        tensors[f"{name}.output"] = y.contiguous()
    save_file(tensors, OUT, metadata={"configs": json.dumps(GOLDEN)})
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
