"""Helpers the architecture tests and the benchmarks share: the oracle, photo crops, running a
model, comparing outputs, reference models.

Tests import this module as ``model_helpers``; benchmarks as ``srt.tests.model_helpers``.
"""

from __future__ import annotations

import importlib.util
import math
import os
from types import ModuleType

import numpy as np
import torch
from spandrel import MAIN_REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORACLE_DIR = os.path.join(os.path.dirname(REPO), "shared", "oracle")


def _load_file(name: str, path: str) -> ModuleType:
    """The Python file at ``path`` as a module named ``name`` (not added to ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def register_pack() -> ModuleType:
    """The checkout as the package ``srt``, as ComfyUI would import it under its folder name.

    ``cli/__init__.py``'s ``register_pack`` (the one implementation) loaded by path: here the
    repository root is not on ``sys.path``, and must not be (ComfyUI owns ``nodes``, ``utils``).
    """
    return _load_file("_srt_cli_entry", os.path.join(REPO, "cli", "__init__.py")).register_pack()


def load_oracle() -> ModuleType:
    """The shared oracle module (``../shared/oracle/weights.py``): make_state_dict(variant),
    load_golden(variant), load_manifest(variant), psnr(a, b), recipe_tensor(key, shape)."""
    path = os.path.join(ORACLE_DIR, "weights.py")
    if not os.path.exists(path):
        raise RuntimeError(f"oracle data not found at {ORACLE_DIR}: clone ../shared beside the repo")
    return _load_file("oracle_weights", path)


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


def official_init(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Re-initialise ``model`` (ours or spandrel's, any family) the way the official training does;
    seeded, without touching the global random state. Returns a copy of the new state dict.

    The official repositories' ``_init_weights``: Linear truncated normal (std 0.02), zero bias;
    LayerNorm 1 / 0; convolutions and InstanceNorm PyTorch's defaults; position-bias tables
    truncated normal 0.02. ATD's own parameters: dictionary ``td`` N(0, 1), TDCA ``scale`` 0.5,
    AC-MSA ``logit_scale`` log(10), refinement ``sigma`` 0. (The shipped default models start
    here: keep the order of the random draws.)
    """
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.InstanceNorm1d)):
                module.reset_parameters()
        for name, param in model.named_parameters():
            if name.endswith(".td"):
                param.normal_()
            elif name.endswith("attn_atd.scale"):
                param.fill_(0.5)
            elif name.endswith("logit_scale"):
                param.fill_(math.log(10.0))
            elif name.endswith(".sigma"):
                param.zero_()
            elif name.endswith("relative_position_bias_table"):
                torch.nn.init.trunc_normal_(param, std=0.02)
    if hasattr(model, "release_caches"):
        model.release_caches()  # position biases cached from the old tables
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def golden_error(oracle, model: torch.nn.Module, variant: str, size: str) -> float:
    """Max abs error of ``model`` against the official output for the golden input ``size``."""
    golden = oracle.load_golden(variant)
    out = run(model, golden[f"in_{size}"])
    assert out.shape == golden[f"out_{size}"].shape
    return max_abs(out, golden[f"out_{size}"])
