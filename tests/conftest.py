"""Test bootstrap.

ComfyUI imports this pack under a module name derived from its folder, with ComfyUI's own folder
on ``sys.path``.  We mirror that: the checkout is registered as a package under the fixed alias
``srt`` (a module object whose ``__path__`` is the repo root) so tests import ``srt.arch``,
``srt.engine`` ... exactly the way ComfyUI would, and the repo root never lands on ``sys.path``.
The root ``__init__.py`` (the ComfyUI entry point) is not executed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
ORACLE_DIR = os.path.join(SHARED, "oracle")

if "srt" not in sys.modules:
    pkg = types.ModuleType("srt")
    pkg.__path__ = [REPO]
    pkg.__file__ = os.path.join(REPO, "__init__.py")
    sys.modules["srt"] = pkg

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _load_oracle():
    path = os.path.join(ORACLE_DIR, "weights.py")
    if not os.path.exists(path):
        raise RuntimeError(f"oracle data not found at {ORACLE_DIR}: clone ../shared beside the repo")
    spec = importlib.util.spec_from_file_location("oracle_weights", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def oracle():
    """The shared oracle module: make_state_dict(variant), load_golden(variant), psnr(a, b)."""
    return _load_oracle()


def photo_crop(name: str, top: int, left: int, h: int, w: int) -> torch.Tensor:
    """A real photo crop from scikit-image as a float32 NCHW tensor in [0, 1]."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    crop = img[top : top + h, left : left + w, :3].astype(np.float32) / 255.0
    assert crop.shape[:2] == (h, w), f"crop {name} {top},{left} {h}x{w} is out of bounds"
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).unsqueeze(0)


@pytest.fixture(scope="session")
def crop():
    return photo_crop


@pytest.fixture(scope="module")
def state_dict(oracle):
    """Oracle weights of an official variant, built once per test module."""
    return functools.lru_cache(maxsize=None)(oracle.make_state_dict)


@pytest.fixture(scope="module")
def ours(state_dict):
    """Our eval-mode fp32 model for an official variant, loaded through our registry (per module)."""
    from srt.arch import load_state_dict

    @functools.cache
    def build(variant: str) -> torch.nn.Module:
        return load_state_dict(dict(state_dict(variant))).model.eval()

    return build
