"""``info``: what Super Resolution Model Loader shows about a checkpoint (one text, :func:`..engine.describe.describe`)."""

from __future__ import annotations

import os
from typing import TextIO

from ..engine.describe import describe
from .models import find_model, load


def run(args, out: TextIO, err: TextIO) -> int:
    """Print the model's description; returns the exit code."""
    path = find_model(args.model)
    print(describe(load(path), os.path.basename(path)), file=out)
    return 0
