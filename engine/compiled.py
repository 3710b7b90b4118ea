"""The opt-in compiled path: one ``torch.compile`` per model module, reused across runs.

Every tile of a run has the same shape, so a compiled module specialises once per (tile shape,
dtype) and then replays; ``torch.compile`` caches those specialisations on the compiled wrapper,
which lives as long as the module does. A model that cannot be compiled runs eagerly, with one
warning, and is not tried again.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {backend: wrapper}
_failed: weakref.WeakSet = weakref.WeakSet()


def compiled(module: nn.Module, backend: str) -> nn.Module:
    """``module`` wrapped by ``torch.compile`` (made once per module and backend)."""
    per_module = _compiled.setdefault(module, {})
    if backend not in per_module:
        per_module[backend] = torch.compile(module, backend=backend, dynamic=False)
    return per_module[backend]


def mark_failed(module: nn.Module) -> None:
    """Compilation of ``module`` failed: run it eagerly from now on."""
    _failed.add(module)
    _compiled.pop(module, None)


def can_compile(module: nn.Module) -> bool:
    return module not in _failed
