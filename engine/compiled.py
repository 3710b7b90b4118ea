"""The opt-in compiled path: ``torch.compile`` of a model class's ``forward``, shared by its models.

Every tile of a run has the same shape, so a compiled forward specialises once per (model class,
tile shape, dtype) and then replays; the weights are inputs of the compiled graph, so every model
of a class (and every half copy a host makes) reuses it. What is kept here is the class's compiled
``forward``, which takes the module as its first argument: nothing holds a model, and a model dies
with its last reference. (``torch.compile(module)`` keeps the module in its wrapper, so a cache of
such wrappers keyed by the module -- even a weak one -- keeps every compiled model, and its half
copies on the GPU, alive for good.) Forward hooks do not run on this path.

Geometry (masks, position biases) is built outside the compiled region: after the module is
placed, the first tile of each shape and dtype runs eagerly and fills the model's geometry cache,
so the compiled graph only reads it. Compiling the very first call instead traces the cache miss
and its build, and the second call, now a cache hit, compiles again.

A model that cannot be compiled runs eagerly, with one warning, and is not tried again.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Hashable
from time import perf_counter
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")

_forwards: dict[tuple[type, object], Callable] = {}  # (model class, backend) -> compiled forward
_failed: weakref.WeakSet = weakref.WeakSet()


def compiled(module: nn.Module, backend) -> Callable:
    """``module``'s forward through ``torch.compile`` (one compiled forward per class and backend)."""
    key = (type(module), backend)
    forward = _forwards.get(key)
    if forward is None:
        forward = _forwards[key] = torch.compile(type(module).forward, backend=backend, dynamic=False)
    return functools.partial(forward, module)


def mark_failed(module: nn.Module) -> None:
    """Compilation of ``module`` failed: run it eagerly from now on."""
    _failed.add(module)


def can_compile(module: nn.Module) -> bool:
    return module not in _failed


def _sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class CompiledRun:
    """The compiled path of one run: which tile kinds have their geometry built, and compile cost.

    Args:
        backend: ``torch.compile`` backend.
        device: the compute device (synchronised around the few timed tiles).
    """

    def __init__(self, backend, device: torch.device) -> None:
        self.backend, self.device = backend, device
        self.ready: set[Hashable] = set()  # tile kinds run eagerly since the module was placed
        self.times: dict[Hashable, dict[str, float]] = {}  # kind -> eager / first / steady seconds

    def placed(self) -> None:
        """The module was (re)placed: its geometry cache may be empty again."""
        self.ready.clear()

    def call(self, module: nn.Module, kind: Hashable, compute: Callable[[Callable], T]) -> T:
        """``compute(callable)`` with ``module`` compiled, or eager for the first tile of ``kind``
        (tile shape and dtype) since the module was placed."""
        eager = kind not in self.ready
        times = self.times.setdefault(kind, {})
        step = "eager" if eager else ("first" if "first" not in times else "steady")
        fn = module if eager else compiled(module, self.backend)
        if step in times:
            out = compute(fn)
        else:  # a few timed tiles per kind: the only host syncs of the compiled path
            _sync(self.device)
            start = perf_counter()
            out = compute(fn)
            _sync(self.device)
            times[step] = perf_counter() - start
        self.ready.add(kind)
        return out

    def seconds(self) -> float:
        """What compiling cost this run: per tile kind, the first compiled tile's time minus a
        steady compiled tile's (minus the eager tile's when only one compiled tile ran). A kind
        compiled by an earlier run costs about nothing here."""
        total = 0.0
        for times in self.times.values():
            if "first" in times:
                total += max(0.0, times["first"] - times.get("steady", times.get("eager", times["first"])))
        return total
