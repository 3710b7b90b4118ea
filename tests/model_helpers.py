"""Helpers the architecture tests and the benchmarks share: the oracle, photo crops, running a
model, comparing outputs, reference models.

Tests import this module as ``model_helpers``; benchmarks as ``srt.tests.model_helpers``.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import numpy as np
import torch
from spandrel import MAIN_REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORACLE_DIR = os.path.join(os.path.dirname(REPO), "shared", "oracle")


def load_oracle() -> ModuleType:
    """The shared oracle module (``../shared/oracle/weights.py``): make_state_dict(variant),
    load_golden(variant), load_manifest(variant), psnr(a, b), recipe_tensor(key, shape)."""
    path = os.path.join(ORACLE_DIR, "weights.py")
    if not os.path.exists(path):
        raise RuntimeError(f"oracle data not found at {ORACLE_DIR}: clone ../shared beside the repo")
    spec = importlib.util.spec_from_file_location("oracle_weights", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def photo_crop(name: str, top: int, left: int, h: int, w: int) -> torch.Tensor:
    """A real photo crop from scikit-image as a float32 NCHW tensor in [0, 1]."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    crop = img[top : top + h, left : left + w, :3].astype(np.float32) / 255.0
    assert crop.shape[:2] == (h, w), f"crop {name} {top},{left} {h}x{w} is out of bounds"
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).unsqueeze(0)


def run(model: torch.nn.Module, x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``model(x)`` under inference mode (``x`` may be a numpy array)."""
    x = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
    with torch.inference_mode():
        return model(x)


def max_abs(a, b) -> float:
    """Largest absolute difference, computed in float64."""
    return float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max())


def spandrel_reference(sd: dict) -> torch.nn.Module:
    """spandrel's model on the same weights (an exact stand-in for the official code), eval mode."""
    return MAIN_REGISTRY.load(dict(sd)).model.eval()


def with_recipe_weights(model: torch.nn.Module, oracle) -> dict:
    """State dict of ``model`` with every float parameter drawn by the oracle's recipe."""
    params = {name for name, _ in model.named_parameters()}
    return {k: oracle.recipe_tensor(k, v.shape) if k in params else v for k, v in model.state_dict().items()}


def golden_error(oracle, model: torch.nn.Module, variant: str, size: str) -> float:
    """Max abs error of ``model`` against the official output for the golden input ``size``."""
    golden = oracle.load_golden(variant)
    out = run(model, golden[f"in_{size}"])
    assert out.shape == golden[f"out_{size}"].shape
    return max_abs(out, golden[f"out_{size}"])
