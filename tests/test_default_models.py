"""The default models shipped in weights/ (issue 13): they load through our loader and through
spandrel with the same output, carry the official key layout and their hyperparameters, stay
under 8 MB, and beat bicubic on a held-out photo crop by a margin the trained models reach.

The crops come from scikit-learn's ``china.jpg`` and ``flower.jpg``: used neither for training
(training/data.py) nor by any other test. Its low-resolution input is the training degradation (antialiased
bicubic, 8-bit). Full-photo numbers: ``python -m training.evaluate`` and weights/DEFAULT_MODELS.md.
"""

from __future__ import annotations

import json
import os

import pytest
import spandrel
import torch
from model_helpers import max_abs, run
from PIL import Image
from safetensors import safe_open

from srt.arch import load_model
from srt.training.data import bicubic_down, held_out_images
from srt.training.evaluate import pil_upscale, y_psnr
from srt.training.recipe import ARCH, shipped_path

SCALES = (2, 4)
MAX_BYTES = 8 * 2**20
SIZE = 96
# top-left corners of 96x96 HR crops: the pagoda's roofs and railings, the dahlia's petals
CROPS = {"china": (140, 120), "flower": (150, 250)}
# the shipped (interim) models' mean gain over Pillow bicubic on these crops (luma PSNR) is
# +0.20 dB at x2 (+0.33, +0.07) and +0.06 dB at x4 (+0.07, +0.05); the bounds leave some slack.
# Raise them with the models (issue 13 targets on full photos: +0.8 dB x2, +0.5 dB x4).
MIN_GAIN_DB = {2: 0.12, 4: 0.03}


@pytest.fixture(scope="module")
def held_out_hr() -> torch.Tensor:
    """The two held-out crops as one ``(2, 3, 96, 96)`` batch."""
    photos = dict(held_out_images())
    crops = [photos[name][:, top : top + SIZE, left : left + SIZE] for name, (top, left) in CROPS.items()]
    return torch.stack(crops).contiguous()


@pytest.mark.parametrize("scale", SCALES)
def test_file_is_small_official_layout_with_hyperparameters(scale):
    path = shipped_path(scale)
    assert os.path.getsize(path) <= MAX_BYTES
    with safe_open(path, framework="pt") as f:
        keys, metadata = set(f.keys()), f.metadata()
    # the buffer the official ATD saves and spandrel's detector requires
    assert "relative_position_index_SA" in keys
    assert "upsample.0.weight" in keys and "layers.0.residual_group.td" in keys
    config = json.loads(metadata["metadata"])
    assert config["upscale"] == scale and config["category_size"] == ARCH["category_size"] == 256


@pytest.mark.parametrize("scale", SCALES)
def test_loads_in_ours_and_spandrel_with_the_same_output(scale, held_out_hr):
    ours = load_model(shipped_path(scale))
    theirs = spandrel.ModelLoader().load_from_file(shipped_path(scale))
    assert ours.architecture.id == theirs.architecture.id == "ATD"
    assert ours.scale == theirs.scale == scale
    lr = bicubic_down(held_out_hr[:1], scale)
    diff = max_abs(run(ours.model, lr), run(theirs.model.eval(), lr))
    print(f"x{scale}: max abs vs spandrel {diff:.2e}")
    assert diff <= 1e-4


@pytest.mark.parametrize("scale", SCALES)
def test_beats_bicubic_on_held_out_crops(scale, held_out_hr):
    model = load_model(shipped_path(scale)).model
    gains = []
    for hr in held_out_hr.split(1):
        lr = bicubic_down(hr, scale)
        ours = y_psnr(run(model, lr).clamp(0, 1), hr, scale)
        bicubic = y_psnr(pil_upscale(lr, scale, Image.BICUBIC), hr, scale)
        gains.append(ours - bicubic)
    print(f"x{scale}: gain over bicubic per crop " + ", ".join(f"{g:+.2f} dB" for g in gains))
    assert sum(gains) / len(gains) >= MIN_GAIN_DB[scale]
