"""Write ``hat_golden_x2.safetensors``: a small HAT (``golden_x2`` in tests/hat_variants.py) and
spandrel's fp32 outputs for two photo crops, so HAT parity is also held against a fixed reference.

The weights follow the oracle's recipe (``../shared/oracle/weights.py``: N(0, 1/fan_in) weights,
position-bias tables of 0.1 N(0, 1)), which gives attention logits of order one, so a wrong
position index or window shows far above the 1e-4 tolerance. The file holds the learned weights
(spandrel's state dict without its index buffers) plus ``golden.in_<HxW>`` / ``golden.out_<HxW>``; its
metadata holds the spandrel constructor arguments and the spandrel/torch versions used.

Run from the repository root: ``python tests/assets/hat_make_golden.py`` (a few seconds).
"""

from __future__ import annotations

import json
import os
import sys

import spandrel
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/: hat_variants, model_helpers

import hat_variants  # noqa: E402
from model_helpers import load_oracle, photo_crop, run, with_recipe_weights  # noqa: E402

NAME = "golden_x2"
OUT = os.path.join(HERE, "hat_golden_x2.safetensors")
CROPS = {"16x24": ("astronaut", 90, 200, 16, 24), "13x19": ("coffee", 150, 220, 13, 19)}


def main() -> None:
    ref = hat_variants.spandrel_module(NAME)
    sd = with_recipe_weights(ref, load_oracle())
    ref.load_state_dict(sd)
    # the learned weights only: the saved index buffers (ours recompute them) would add 106 KiB
    params = {name for name, _ in ref.named_parameters()}
    tensors = {k: v.contiguous() for k, v in sd.items() if k in params}
    for size, crop in CROPS.items():
        x = photo_crop(*crop)
        tensors[f"golden.in_{size}"] = x.contiguous()
        tensors[f"golden.out_{size}"] = run(ref, x).contiguous()
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in hat_variants.VARIANTS[NAME].items()}
    meta = {"config": json.dumps(config), "spandrel": spandrel.__version__, "torch": torch.__version__}
    save_file(tensors, OUT, metadata=meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
