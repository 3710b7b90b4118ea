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
# the shipped models' mean gain over Pillow bicubic on these crops (luma PSNR) is +0.80 dB at x2
# (+0.45, +1.14) and +0.32 dB at x4 (+0.24, +0.40); the bounds leave some slack. Full photos:
# +0.99 dB x2 and +0.61 dB x4 (issue 13 targets: +0.8 and +0.5), weights/DEFAULT_MODELS.md.
MIN_GAIN_DB = {2: 0.6, 4: 0.25}


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


# flat colours users meet in cartoons and graphics, saturated ones included: inside a flat area
# the output must keep the colour (an earlier run without colour augmentation shifted saturated
# green by 5 levels on average, up to 9, and 7.6 levels averaged over the whole image).
FLAT_COLOURS = [(0.2, 0.8, 0.2), (0.9, 0.1, 0.1), (0.1, 0.2, 0.9), (0.95, 0.95, 0.95), (0.05, 0.05, 0.05),
                (0.5, 0.5, 0.5), (0.9, 0.8, 0.2), (0.6, 0.3, 0.7)]  # fmt: skip
FLAT_MAX_LEVELS = {"interior": 1.5, "image mean": 1.0}  # shipped: 0.32 / 0.43 (x2), 0.68 / 0.29 (x4)


@pytest.mark.parametrize("scale", SCALES)
def test_flat_colours_stay_flat(scale):
    model = load_model(shipped_path(scale)).model
    lr = torch.tensor(FLAT_COLOURS).view(-1, 3, 1, 1).expand(-1, 3, 32, 32).contiguous()
    out = run(model, lr).clamp(0, 1)
    dev = (out - lr[..., :1, :1]).abs() * 255  # 8-bit levels
    ring = 4 * scale  # output pixels next to the image edge
    interior = dev[..., ring:-ring, ring:-ring].amax().item()
    mean = dev.mean((1, 2, 3)).amax().item()  # edges included, worst colour
    print(f"x{scale}: interior max {interior:.2f} levels, mean over the image (worst colour) {mean:.2f}")
    assert interior <= FLAT_MAX_LEVELS["interior"] and mean <= FLAT_MAX_LEVELS["image mean"]
