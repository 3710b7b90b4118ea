"""Helpers the architecture tests share: running a model, comparing outputs, reference models."""

from __future__ import annotations

import numpy as np
import torch
from spandrel import MAIN_REGISTRY


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
