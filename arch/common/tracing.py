"""Whether a forward is being traced (``torch.compile`` or ``torch.export``) rather than run.

A traced forward must stay one graph: no opaque fused ops (:mod:`.linear`), no Python-side caches
written with the tracer's fake tensors (:mod:`.cache`, :mod:`.rect_windows`). This is the one test
those switches share.
"""

from __future__ import annotations

import torch


def is_tracing() -> bool:
    """True inside ``torch.compile``'s trace and inside ``torch.export`` (strict or not)."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def example_value(n: int | torch.SymInt) -> int:
    """A size as a Python int: ``n`` itself, or the example value a symbolic size (an exported graph
    with symbolic sizes) was traced with, read without a guard.

    Only for structure that is the same for every size the export serves: the model's
    :meth:`~.model.SRModel.export_size_range` keeps the graph's sizes where that holds.
    """
    if isinstance(n, int):
        return n
    hint = getattr(n.node, "hint", None)
    if hint is None:
        raise TypeError(f"symbolic size {n} has no example value to trace with")
    return int(hint)
