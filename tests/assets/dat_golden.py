"""Writes ``dat_golden.safetensors``: tiny DAT models with spandrel's outputs on photo crops.

    .venv/bin/python tests/assets/dat_golden.py

For each config in ``GOLDEN`` the file holds ``<name>.weights.<key>`` (the official initialisation
under a fixed seed, then BatchNorm statistics, norms, biases and temperatures drawn at random by
``dat_variants.perturbed`` so none of them is trivially 0 or 1; the window tables ``rpe_biases`` kept
as official files have them, the other derived buffers left out), ``<name>.input`` (a photo crop
whose sides are not window multiples) and ``<name>.output`` (spandrel's DAT, i.e. the official
code, on that input). The safetensors metadata holds the constructor arguments as JSON under
``configs``. tests/test_dat.py loads the weights through our registry and must reproduce the
outputs: a fixed reference, independent of the installed spandrel.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dat_golden.safetensors")

# Both attentions, then a group of one (shifted) spatial block; windows 4 x 8 and 8 x 4, 3conv and the
# one-step pixel shuffle x3. Then a grayscale x1 pixel-shuffle restorer with square windows, no qkv
# bias and inputs in [0, 255].
GOLDEN = {
    "direct_x3": dict(
        embed_dim=24, depth=[2, 1], num_heads=[2, 4], expansion_factor=2.0, split_size=[4, 8], upscale=3,
        upsampler="pixelshuffledirect", resi_connection="3conv", in_chans=3, img_size=16,
    ),
    "gray_x1": dict(
        embed_dim=16, depth=[2], num_heads=[2], expansion_factor=1.0, split_size=[4, 4], upscale=1,
        upsampler="pixelshuffle", resi_connection="1conv", in_chans=1, img_range=255.0, qkv_bias=False,
        img_size=16,
    ),
}  # fmt: skip
# (photo, top, left, height, width) of each input crop
CROPS = {"direct_x3": ("astronaut", 120, 160, 17, 22), "gray_x1": ("coffee", 150, 230, 13, 18)}
DERIVED = ("relative_position_index", "attn_mask_0", "attn_mask_1")


def main() -> None:
    sys.path.insert(0, os.path.dirname(HERE))  # tests/, for model_helpers and dat_variants
    from dat_variants import perturbed
    from model_helpers import photo_crop
    from spandrel.architectures.DAT import DAT

    torch.set_num_threads(1)
    tensors = {}
    for i, (name, config) in enumerate(GOLDEN.items()):
        torch.manual_seed(i)
        model = DAT(**config).eval()
        sd = perturbed(dict(model.state_dict()), seed=i)
        model.load_state_dict(sd)
        x = photo_crop(*CROPS[name])[:, : config["in_chans"]].contiguous()
        x = x * config.get("img_range", 1.0)
        with torch.inference_mode():
            y = model(x)
        kept = {k: v for k, v in sd.items() if not k.endswith(DERIVED)}
        tensors.update({f"{name}.weights.{k}": v.contiguous() for k, v in kept.items()})
        tensors[f"{name}.input"] = x
        tensors[f"{name}.output"] = y.contiguous()
    save_file(tensors, OUT, metadata={"configs": json.dumps(GOLDEN)})
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
