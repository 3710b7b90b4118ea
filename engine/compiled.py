"""The opt-in compiled path: ``torch.compile`` of a model class's ``forward``, shared by its models.

Every tile of a run has the same shape, so a compiled forward specialises once per (model class,
config, tile shape, dtype) and then replays; the weights are inputs of the compiled graph, so every
model of a class (and every half copy a host makes, and every reload) reuses it: our models key
their geometry by shape, dtype, device and module path, never by an object identity the compiler
would guard on. What is kept here is the class's compiled ``forward``, which takes the module as
its first argument: nothing holds a model, and a model dies with its last reference.
(``torch.compile(module)`` keeps the module in its wrapper, so a cache of such wrappers keyed by
the module -- even a weak one -- keeps every compiled model, and its half copies on the GPU, alive
for good.) Forward hooks do not run on this path.

Geometry (masks, position biases, window orders) is built outside the compiled region: after the
module is placed, the first tile of each shape and dtype runs eagerly and fills the model's
geometry cache, so the compiled graph only reads it. Compiling the very first call instead traces
the cache miss and its build, and the second call, now a cache hit, compiles again.

On CUDA with inductor the graph is also captured as a CUDA graph (``mode="reduce-overhead"``): the
equal tiles of a frame replay it with their input copied into a static buffer, one launch per tile
instead of hundreds. A capture that fails falls back to the compiled graph without CUDA graphs,
with one warning. A model that cannot be compiled at all runs eagerly, with one warning, and is
not tried again.

Each run counts what the compiler did (:class:`CompileStats`): graphs compiled, graph breaks, and
recompiles -- a compile for a (class, tile shape, dtype, mode) this process had compiled already,
which means some guard failed (an object identity, a changed attribute) and the compiled path is
slower than it should be.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from time import perf_counter
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")

CUDA_GRAPHS = "reduce-overhead"  # torch.compile's mode: inductor + CUDA graphs

_forwards: dict[tuple[type, object, str | None], Callable] = {}  # (class, backend, mode) -> forward
_failed: weakref.WeakSet = weakref.WeakSet()
_no_cuda_graphs: set[type] = set()  # classes whose CUDA-graph capture failed: plain compiled
_compiled_kinds: set[Hashable] = set()  # (class, backend, mode, tile kind) compiled in this process


def compile_mode(backend, device: torch.device) -> str | None:
    """The ``torch.compile`` mode for ``backend`` on ``device``: CUDA graphs with inductor on CUDA,
    the default mode everywhere else (other backends take no mode)."""
    if backend == "inductor" and torch.device(device).type == "cuda":
        return CUDA_GRAPHS
    return None


def compiled(module: nn.Module, backend, mode: str | None = None) -> Callable:
    """``module``'s forward through ``torch.compile`` (one compiled forward per class, backend and mode)."""
    key = (type(module), backend, mode)
    forward = _forwards.get(key)
    if forward is None:
        options = {"mode": mode} if mode is not None else {}
        forward = _forwards[key] = torch.compile(
            type(module).forward, backend=backend, dynamic=False, **options
        )
    return functools.partial(forward, module)


def reset() -> None:
    """Forget every compiled forward and what was learnt about them (with ``torch._dynamo.reset()``)."""
    _forwards.clear()
    _no_cuda_graphs.clear()
    _compiled_kinds.clear()
    _failed.clear()


def mark_failed(module: nn.Module) -> None:
    """Compilation of ``module`` failed: run it eagerly from now on."""
    _failed.add(module)


def can_compile(module: nn.Module) -> bool:
    return module not in _failed


def _sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _dynamo_counts() -> tuple[int, int]:
    """Graphs dynamo has compiled and graph breaks it has met in this process so far."""
    counters = torch._dynamo.utils.counters
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


@dataclass
class CompileStats:
    """What the compiler did in one run (for the log line and for tests).

    Attributes:
        graphs: graphs compiled (one per tile shape and dtype when the model compiles whole).
        breaks: graph breaks met while compiling (0 for our families).
        recompiles: compiles of a tile shape and dtype this process had compiled already.
        cuda_graphs: whether tiles replayed CUDA graphs.
        tiles: tiles run through the compiled forward.
    """

    tiles: int = 0
    graphs: int = 0
    breaks: int = 0
    recompiles: int = 0
    cuda_graphs: bool = False

    def describe(self) -> str:
        """E.g. ``1 graph, 0 breaks, 0 recompiles, CUDA graphs``."""
        parts = [
            f"{self.graphs} graph{'s' * (self.graphs != 1)}",
            f"{self.breaks} break{'s' * (self.breaks != 1)}",
            f"{self.recompiles} recompile{'s' * (self.recompiles != 1)}",
        ]
        return ", ".join(parts + (["CUDA graphs"] if self.cuda_graphs else []))


class CompiledRun:
    """The compiled path of one run: which tile kinds have their geometry built, compile cost, counts.

    Args:
        backend: ``torch.compile`` backend.
        device: the compute device (synchronised around the few timed tiles).
        warn: where the one warning of a failed CUDA-graph capture goes.
        is_oom: whether an error is the device running out of memory (the caller's to handle, not a
            failed capture).
    """

    def __init__(
        self,
        backend,
        device: torch.device,
        warn: Callable[[str], None] | None = None,
        is_oom: Callable[[BaseException], bool] = lambda e: False,
    ) -> None:
        self.backend, self.device, self.warn, self.is_oom = backend, device, warn, is_oom
        self.mode = compile_mode(backend, device)
        self.ready: set[Hashable] = set()  # tile kinds run eagerly since the module was placed
        self.times: dict[Hashable, dict[str, float]] = {}  # kind -> eager / first / steady seconds
        self.stats = CompileStats()

    def placed(self) -> None:
        """The module was (re)placed: its geometry cache may be empty again."""
        self.ready.clear()

    def _mode_for(self, module: nn.Module) -> str | None:
        return None if type(module) in _no_cuda_graphs else self.mode

    def _run_compiled(self, module: nn.Module, kind: Hashable, compute: Callable[[Callable], T]) -> T:
        """``compute`` through the compiled forward, counting graphs, breaks and recompiles."""
        mode = self._mode_for(module)
        graphs, breaks = _dynamo_counts()
        if mode == CUDA_GRAPHS:
            torch.compiler.cudagraph_mark_step_begin()  # the previous tile's outputs are consumed
        try:
            out = compute(compiled(module, self.backend, mode))
        except Exception as e:
            if mode != CUDA_GRAPHS or self.is_oom(e):
                raise
            _no_cuda_graphs.add(type(module))
            if self.warn is not None:
                self.warn(
                    f"CUDA graph capture failed for {type(module).__name__} ({type(e).__name__}: {e}); "
                    "running it compiled without CUDA graphs."
                )
            return self._run_compiled(module, kind, compute)
        new_graphs, new_breaks = _dynamo_counts()
        if new_graphs > graphs:
            key = (type(module), self.backend, mode, kind)
            self.stats.graphs += new_graphs - graphs
            self.stats.breaks += new_breaks - breaks
            self.stats.recompiles += key in _compiled_kinds
            _compiled_kinds.add(key)
        self.stats.cuda_graphs = self.stats.cuda_graphs or mode == CUDA_GRAPHS
        self.stats.tiles += 1
        return out

    def call(self, module: nn.Module, kind: Hashable, compute: Callable[[Callable], T]) -> T:
        """``compute(callable)`` with ``module`` compiled, or eager for the first tile of ``kind``
        (tile shape and dtype) since the module was placed."""
        eager = kind not in self.ready
        times = self.times.setdefault(kind, {})
        step = "eager" if eager else ("first" if "first" not in times else "steady")
        run = (lambda: compute(module)) if eager else (lambda: self._run_compiled(module, kind, compute))
        if step in times:
            out = run()
        else:  # a few timed tiles per kind: the only host syncs of the compiled path
            _sync(self.device)
            start = perf_counter()
            out = run()
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
