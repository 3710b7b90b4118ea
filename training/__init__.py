"""Training and evaluation of the pack's default models (issue 13): see ``weights/DEFAULT_MODELS.md``.

Run the modules from the repository root (``python -m training.train_default --scale 2``); like
the tests and benchmarks, they import the checkout under the alias ``srt`` (:func:`import_pack`),
so the repository root never has to be an installed package.
"""

from __future__ import annotations

import os
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.environ.get("SRT_TRAINING_RUNS") or os.path.join(REPO, "training", "runs")
WEIGHTS = os.path.join(REPO, "weights")


def import_pack():
    """Register the checkout as the package ``srt`` (as tests/conftest.py does) and return it."""
    if "srt" not in sys.modules:
        pkg = types.ModuleType("srt")
        pkg.__path__ = [REPO]
        pkg.__file__ = os.path.join(REPO, "__init__.py")
        sys.modules["srt"] = pkg
    return sys.modules["srt"]
