"""Training and evaluation of the pack's default models (issue 13): see ``weights/DEFAULT_MODELS.md``.

Run the modules from the repository root (``python -m training.train_default --scale 2``); like
the tests and benchmarks, they import the checkout under the alias ``srt`` (:func:`import_pack`),
so the repository root never has to be an installed package.
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.environ.get("SRT_TRAINING_RUNS") or os.path.join(REPO, "training", "runs")
WEIGHTS = os.path.join(REPO, "weights")


def import_pack():
    """The checkout as the package ``srt`` (registered by ``cli.register_pack``), returned."""
    if "srt" not in sys.modules:
        from cli import register_pack  # python -m training.<module>: the repository root is on sys.path

        register_pack()
    return sys.modules["srt"]
