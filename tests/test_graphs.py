"""One graph per tile (STYLE rule 9): every family traces whole under ``torch.compile``, reads no
value back to the host inside a forward, and compiles once per (class, config, tile shape, dtype)
whatever the number of model instances, half copies and reloads.

Graph counts come from ``torch._dynamo.explain`` and from a counting backend (the traced graph run
as is: no code generation, fast); one test per family also runs inductor, the backend users get,
and holds its output to the eager one.
"""

from __future__ import annotations

import copy

import pytest
import torch
from compile_helpers import CountingBackend, fresh_dynamo  # noqa: F401 (fixture)
from engine_models import wrap
from tiny_models import TINY

from srt.engine.compiled import compiled
from srt.engine.runner import Host, Settings, upscale

FAMILIES = sorted(TINY)
MULTIPLE = (16, 16)  # a multiple of every tiny config's window
ODD = (17, 21)  # padded inside the forward (RGT takes 16 px and up)


pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def tiny(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return TINY[name]().eval().to(dtype)


def warmed(name: str, size: tuple[int, int], dtype: torch.dtype) -> tuple[torch.nn.Module, torch.Tensor]:
    """A tiny model and an input, after one eager call (the geometry cache holds this shape)."""
    model = tiny(name, dtype=dtype)
    x = torch.rand(1, 3, *size).to(dtype)
    with torch.inference_mode():
        model(x)
    return model, x


@pytest.mark.parametrize(
    ("size", "dtype"),
    [(MULTIPLE, torch.float32), (ODD, torch.float32), (ODD, torch.bfloat16)],
    ids=["multiple-fp32", "odd-fp32", "odd-bf16"],
)
@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_traces_as_one_graph(name, size, dtype):
    model, x = warmed(name, size, dtype)
    with torch.inference_mode():
        explained = torch._dynamo.explain(model)(x)
    reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), reasons


@pytest.mark.parametrize("name", FAMILIES)
def test_fullgraph_compile_of_the_class_forward_in_fp16(name):
    """What the engine compiles (the class's forward, the module an argument), in fp16, with
    ``fullgraph=True``: a graph break would raise here."""
    model, x = warmed(name, MULTIPLE, torch.float16)
    forward = torch.compile(type(model).forward, backend=CountingBackend(), dynamic=False, fullgraph=True)
    with torch.inference_mode():
        # the traced graph's ops may round differently: a few fp16 steps (2^-10 at 1.0)
        torch.testing.assert_close(forward(model, x), model(x), atol=4 * 2**-10, rtol=0)


class Tripwire:
    """Patches every way a tensor's value reaches Python (``.item()``, ``.tolist()``, ``bool()``,
    ``int()``, ``float()``, ``bincount``, ``nonzero``) to raise while armed."""

    PATCHED = (
        (torch.Tensor, "item"),
        (torch.Tensor, "tolist"),
        (torch.Tensor, "__bool__"),
        (torch.Tensor, "__int__"),
        (torch.Tensor, "__float__"),
        (torch.Tensor, "__index__"),
        (torch.Tensor, "nonzero"),
        (torch, "bincount"),
        (torch, "nonzero"),
    )

    def __init__(self, monkeypatch) -> None:
        self.armed = False
        for owner, name in self.PATCHED:
            monkeypatch.setattr(owner, name, self._guard(getattr(owner, name), name))

    def _guard(self, real, name):
        def guarded(*args, **kwargs):
            if self.armed:
                raise AssertionError(f"a forward read a tensor's value on the host ({name})")
            return real(*args, **kwargs)

        return guarded


@pytest.mark.parametrize("name", FAMILIES)
def test_a_warm_forward_reads_no_value_back_to_the_host(name, monkeypatch):
    """After the first tile of a shape (geometry built), a forward has no host sync."""
    tripwire = Tripwire(monkeypatch)
    for size in (MULTIPLE, ODD):
        model, x = warmed(name, size, torch.float32)
        tripwire.armed = True
        try:
            with torch.inference_mode():
                model(x)
        finally:
            tripwire.armed = False


def test_the_tripwire_fires():
    """The test above can fail: a forward that reads a value back raises."""
    patch = pytest.MonkeyPatch()
    try:
        tripwire = Tripwire(patch)
        tripwire.armed = True
        with pytest.raises(AssertionError, match="tolist"):
            torch.arange(3).tolist()
        with pytest.raises(AssertionError, match="__bool__"):
            bool(torch.ones(1) > 0)
    finally:
        patch.undo()


@pytest.mark.parametrize("name", FAMILIES)
def test_instances_half_copies_and_reloads_share_one_compile_per_dtype(name):
    """3 fp32 models, a reload, 2 bf16 copies: one graph for fp32 and one for bf16."""
    backend = CountingBackend()
    x = torch.rand(1, 3, *ODD)
    models = [tiny(name, seed) for seed in range(3)]
    models += [copy.deepcopy(models[0]).to(torch.bfloat16).requires_grad_(False) for _ in range(2)]
    with torch.inference_mode():
        for model in models:
            xi = x.to(next(model.parameters()).dtype)
            model(xi)  # geometry first, as the engine does
            # the traced graph takes plain ops where eager fp32 fuses through oneDNN: dtype tolerances
            torch.testing.assert_close(compiled(model, backend)(xi), model(xi))
        reloaded = models[1]
        reloaded.load_state_dict(models[2].state_dict())  # empties its cache: rebuilt eagerly
        reloaded(x)
        compiled(reloaded, backend)(x)
    assert backend.graphs == 2


@pytest.mark.parametrize("name", ["HAT", "RGT"])
def test_the_engine_compiles_once_for_every_instance_and_counts_it(name):
    """Through the engine: three models of one config, each upscaling a 3x2-tile image with
    ``compile``: one graph in all; the report counts it, and no recompile."""
    backend = CountingBackend()
    host = Host(compile_backend=backend)
    image = torch.rand(1, 40, 28, 3)
    settings = Settings(tile=16, overlap=4, precision="fp32", compile=True)
    reports = []
    for seed in range(3):
        model = tiny(name, seed)
        desc = wrap(model, model.scale, multiple_of=model.preferred_tile_multiple())
        result = upscale(desc, image, settings, host)
        eager = upscale(desc, image, Settings(tile=16, overlap=4, precision="fp32"), Host())
        torch.testing.assert_close(result.image, eager.image, atol=1e-5, rtol=0)
        reports.append(result.report.compile)
    assert backend.graphs == 1
    assert [(r.graphs, r.breaks, r.recompiles) for r in reports] == [(1, 0, 0), (0, 0, 0), (0, 0, 0)]
    assert all(r.tiles == 5 for r in reports), "6 tiles: the first eager, the rest compiled"
    assert reports[0].describe() == "1 graph, 0 breaks, 0 recompiles"


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_inductor_output_matches_eager(name):
    """The compiled path users get (inductor, C++ on the CPU) within 1e-4 of eager in fp32."""
    model, x = warmed(name, ODD, torch.float32)
    forward = torch.compile(type(model).forward, dynamic=False, fullgraph=True)
    with torch.inference_mode():
        eager = model(x)
        out = forward(model, x)
    assert out.shape == eager.shape
    assert (out - eager).abs().max().item() <= 1e-4
