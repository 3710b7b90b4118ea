"""Test bootstrap.

ComfyUI imports this pack under a module name derived from its folder, with ComfyUI's own folder
on ``sys.path``.  We mirror that: the checkout is registered as a package under the fixed alias
``srt`` (a module object whose ``__path__`` is the repo root) so tests import ``srt.arch``,
``srt.engine`` ... exactly the way ComfyUI would, and the repo root never lands on ``sys.path``.
The root ``__init__.py`` (the ComfyUI entry point) is not executed.
"""

from __future__ import annotations

import functools
import os

import pytest
import torch
from model_helpers import load_oracle, photo_crop, register_pack

register_pack()

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def oracle():
    """The shared oracle module: make_state_dict(variant), load_golden(variant), psnr(a, b)."""
    return load_oracle()


@pytest.fixture(scope="session")
def crop():
    return photo_crop


@pytest.fixture(scope="module")
def state_dict(oracle):
    """Oracle weights of an official variant, built once per test module."""
    return functools.lru_cache(maxsize=None)(oracle.make_state_dict)


@pytest.fixture(scope="module")
def weights(state_dict):
    """A fresh (mutable) copy of an official variant's oracle weights: ``weights(variant)``."""
    return lambda variant: dict(state_dict(variant))


@pytest.fixture(scope="module")
def ours(state_dict):
    """Our eval-mode fp32 model for an official variant, loaded through our registry (per module)."""
    from srt.arch import load_state_dict

    @functools.cache
    def build(variant: str) -> torch.nn.Module:
        return load_state_dict(dict(state_dict(variant))).model.eval()

    return build
