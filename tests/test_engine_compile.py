"""The opt-in compiled path (engine/compiled.py): models die with their last reference, geometry is
built outside the compiled region (one compile per tile shape), compile time reported honestly.

Compiled with counting backends that return the traced graph unchanged: fast on the CPU.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from compile_helpers import CountingBackend, fresh_dynamo  # noqa: F401 (fixture)
from engine_models import per_pixel, wrap
from torch import nn

from srt.arch.common.config import ModelConfig
from srt.arch.common.model import SRModel
from srt.engine.compiled import CUDA_GRAPHS, CompileStats, compile_mode
from srt.engine.compiled import compiled as compiled_forward
from srt.engine.runner import Host, Settings, upscale

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


class WithGeometry(SRModel):
    """A per-pixel x2 model with a cached geometry tensor, like our families' masks and biases."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(ModelConfig(scale=2))
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 3, 1)
        self.builds = 0

    def build_bias(self, x: torch.Tensor) -> torch.Tensor:
        self.builds += 1
        return torch.linspace(-0.1, 0.1, x.shape[-1], device=x.device, dtype=x.dtype)

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        return 64.0

    def preferred_tile_multiple(self) -> int:
        return 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.cached_geometry("test.bias", x, lambda: self.build_bias(x), *x.shape[-2:])
        return F.interpolate(torch.sigmoid(self.conv(x) + bias), scale_factor=2, mode="nearest")


def test_a_compiled_model_dies_with_its_last_reference():
    """Freed by reference counting alone: on a GPU its weights go at once, not at the next gc run."""
    desc = per_pixel(2)
    image = torch.rand(1, 24, 24, 3)
    gc.collect()
    gc.disable()
    try:
        settings = Settings(tile=16, overlap=4, compile=True)
        result = upscale(desc, image, settings, Host(compile_backend="eager"))
        assert result.report.tiles_run == 4
        model = weakref.ref(desc.model)
        del desc
        assert model() is None, "something still holds the compiled model (and on a GPU, its weights)"
    finally:
        gc.enable()


def test_geometry_is_built_outside_the_compiled_region_one_compile_per_shape():
    backend = CountingBackend()
    host = Host(compile_backend=backend)
    image = torch.rand(1, 40, 40, 3)
    settings = Settings(tile=16, overlap=4, compile=True)
    model = WithGeometry()
    desc = wrap(model, 2)
    eager = upscale(desc, image, Settings(tile=16, overlap=4), Host()).image
    model.release_caches()
    first = upscale(desc, image, settings, host)
    assert first.report.tiles_run == 9
    assert backend.graphs == 1, "one compile for the tile shape (not a second once the geometry is cached)"
    assert model.builds == 2, "geometry built once per run, eagerly (caches empty at the start of each)"
    torch.testing.assert_close(first.image, eager, atol=1e-6, rtol=0)
    model.release_caches()  # as a host that moved the model would
    again = upscale(desc, image, settings, host)
    assert backend.graphs == 1, "a later run reuses the compiled graph"
    torch.testing.assert_close(again.image, eager, atol=0, rtol=0)
    other = wrap(WithGeometry(seed=1), 2)  # another model of the class: its own weights, the same graph
    result = upscale(other, image, settings, host).image
    assert backend.graphs == 1
    torch.testing.assert_close(result, upscale(other, image, Settings(tile=16, overlap=4), Host()).image)


def test_compile_seconds_is_the_first_compiled_tile_minus_a_steady_one(monkeypatch):
    """A fake clock: every tile takes 1 s, compiling takes 5 s."""
    now = [0.0]

    def tick(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr("srt.engine.compiled.perf_counter", lambda: now[0])
    host = Host(compile_backend=CountingBackend(on_compile=lambda: tick(5.0)))
    desc = wrap(WithGeometry(), 2)
    call = desc._call_fn
    desc._call_fn = lambda module, x: (tick(1.0), call(module, x))[1]  # outside the compiled region
    settings = Settings(tile=16, overlap=4, compile=True)
    first = upscale(desc, torch.rand(1, 40, 40, 3), settings, host).report
    assert first.compile_seconds == 5.0  # eager 1 s, first compiled 6 s, steady 1 s
    again = upscale(desc, torch.rand(1, 40, 40, 3), settings, host).report
    assert again.compile_seconds == 0.0, "nothing was compiled in the second run"
    # a new tile shape in a run of two tiles: eager 1 s, then one compiled tile of 6 s
    settings = Settings(tile=24, overlap=4, compile=True)
    two_tiles = upscale(desc, torch.rand(1, 24, 40, 3), settings, host).report
    assert two_tiles.tiles_run == 2 and two_tiles.compile_seconds == 5.0


# ---- CUDA graphs: mode selection, counting, capture fallback (what runs on the CPU) ----------------


def test_cuda_graphs_only_with_inductor_on_cuda():
    assert compile_mode("inductor", torch.device("cuda", 0)) == CUDA_GRAPHS == "reduce-overhead"
    assert compile_mode("inductor", torch.device("cpu")) is None
    assert compile_mode(CountingBackend(), torch.device("cuda")) is None, "custom backends take no mode"
    assert compile_mode("eager", "cuda") is None


def _capture_fails(monkeypatch, error: BaseException, once: bool = False):
    """The engine's compiled path in CUDA-graph mode, on the CPU: the CUDA-graph forward raises
    ``error`` (on its first call only, with ``once``; then it runs as the plain one); the plain
    compiled forward (a counting backend) works."""
    backend = CountingBackend()
    real = compiled_forward
    modes, raised = [], []

    def fake(module, backend_, mode=None):
        modes.append(mode)
        if mode == CUDA_GRAPHS and not (once and raised):

            def capture(*args, **kwargs):
                raised.append(error)
                raise error

            return capture
        return real(module, backend_, None)

    monkeypatch.setattr("srt.engine.compiled.compiled", fake)
    monkeypatch.setattr("srt.engine.compiled.compile_mode", lambda b, d: CUDA_GRAPHS)
    return backend, modes


def test_a_failed_cuda_graph_capture_runs_compiled_without_graphs_with_one_warning(monkeypatch):
    backend, modes = _capture_fails(
        monkeypatch, RuntimeError("CUDA graph capture failed: operation not permitted")
    )
    warnings = []
    host = Host(compile_backend=backend, warn=warnings.append)
    model = WithGeometry()
    desc = wrap(model, 2)
    image = torch.rand(1, 40, 40, 3)
    result = upscale(desc, image, Settings(tile=16, overlap=4, compile=True), host)
    eager = upscale(desc, image, Settings(tile=16, overlap=4), Host())
    torch.testing.assert_close(result.image, eager.image, atol=1e-6, rtol=0)
    assert len(warnings) == 1 and "without CUDA graphs" in warnings[0] and "WithGeometry" in warnings[0]
    assert modes.count(CUDA_GRAPHS) == 1, "the capture is not tried again for the class"
    stats = result.report.compile
    assert stats.tiles == 8 and not stats.cuda_graphs and backend.graphs == 1
    again = upscale(desc, image, Settings(tile=16, overlap=4, compile=True), host)
    assert modes.count(CUDA_GRAPHS) == 1 and len(warnings) == 1 and again.report.compile.tiles == 8


def test_out_of_memory_in_a_cuda_graph_is_not_a_failed_capture(monkeypatch):
    """Out of memory goes to the engine's tile back-off, not to the no-CUDA-graphs fallback."""

    class FakeOOM(RuntimeError):
        pass

    backend, _ = _capture_fails(monkeypatch, FakeOOM("CUDA out of memory"), once=True)
    warnings = []
    host = Host(compile_backend=backend, warn=warnings.append, oom_exceptions=(FakeOOM,))
    result = upscale(
        wrap(WithGeometry(), 2), torch.rand(1, 80, 80, 3), Settings(tile=64, overlap=4, compile=True), host
    )
    assert result.report.oom_backoffs == 1 and result.report.tile == (32, 32)
    assert not any("without CUDA graphs" in w for w in warnings)
    assert result.report.compile.cuda_graphs, "the smaller tiles still replay CUDA graphs"


def test_compile_stats_describe_what_the_compiler_did():
    assert CompileStats(tiles=3, graphs=1).describe() == "1 graph, 0 breaks, 0 recompiles"
    stats = CompileStats(tiles=9, graphs=3, breaks=2, recompiles=1, cuda_graphs=True)
    assert stats.describe() == "3 graphs, 2 breaks, 1 recompile, CUDA graphs"


def test_a_recompile_for_a_shape_compiled_before_is_counted():
    """A model whose forward guards on its identity compiles again for every instance: counted."""

    class ByIdentity(WithGeometry):
        def forward(self, x):
            # an object identity in a traced value: every instance fails the last one's guard
            return super().forward(x) + (id(self) % 7) * 0.0

    backend = CountingBackend()
    host = Host(compile_backend=backend)
    settings = Settings(tile=16, overlap=4, compile=True)
    first = upscale(wrap(ByIdentity(), 2), torch.rand(1, 24, 24, 3), settings, host).report.compile
    second = upscale(wrap(ByIdentity(seed=1), 2), torch.rand(1, 24, 24, 3), settings, host).report.compile
    assert (first.graphs, first.recompiles) == (1, 0)
    assert (second.graphs, second.recompiles) == (1, 1)
