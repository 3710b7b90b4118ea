"""``upscale --compile auto|on|off``: the policy (cli/compile_policy.py) and what the CLI runs.

End to end with the shipped tiny ATD x2 model on the CPU; ``on`` compiles with dynamo's ``eager``
backend (traced, not lowered: fast), swapped in through ``Upscaler.compile_backend``.
"""

from __future__ import annotations

import math
import pathlib
from types import SimpleNamespace

import pytest
import torch
from cli_helpers import one_error_line, rgb, run_cli
from PIL import Image

from srt.cli import compile_policy, upscale, upscaler
from srt.cli.compile_policy import CUDA_MIN_TILES, PAYBACK, job_tiles, pays, should_compile
from srt.cli.images import EXIF_ORIENTATION
from srt.cli.models import load
from srt.engine.host import Settings

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "weights" / "SRT_ATD-tiny_x2.safetensors")


@pytest.fixture
def reports(monkeypatch) -> list:
    """The engine's reports of the images the CLI runs."""
    seen = []

    def spy(*args, **kwargs):
        result = engine_upscale(*args, **kwargs)
        seen.append(result.report)
        return result

    engine_upscale = upscaler.upscale
    monkeypatch.setattr(upscaler, "upscale", spy)
    return seen


@pytest.fixture
def cheap_compiler(monkeypatch):
    monkeypatch.setattr(upscaler.Upscaler, "compile_backend", "eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _upscale(capsys, tmp_path, *options) -> tuple[int, str, str]:
    image = rgb(tmp_path / "in.png", h=32, w=32)
    return run_cli(
        capsys, "upscale", image, "-o", tmp_path / "out.png", "--model", TINY, "--device", "cpu", *options
    )


def test_off_runs_eager(capsys, tmp_path, reports):
    code, out, err = _upscale(capsys, tmp_path, "--tile", 16, "--compile", "off")
    assert code == 0, err
    assert reports[0].compile.tiles == 0 and reports[0].tiles_run > 1
    assert "compiled" not in out


def test_on_compiles_and_the_summary_says_so(capsys, tmp_path, reports, cheap_compiler):
    code, out, err = _upscale(capsys, tmp_path, "--tile", 16, "--overlap", 4, "--compile", "on")
    assert code == 0, err
    report = reports[0]
    assert report.compile.tiles == report.tiles_run - 1  # the first tile runs eagerly (geometry)
    assert (report.compile.graphs, report.compile.breaks, report.compile.recompiles) == (1, 0, 0)
    assert "compiled: 1 graph, 0 breaks, 0 recompiles" in out.strip().splitlines()[0]
    assert Image.open(tmp_path / "out.png").size == (64, 64)


def test_auto_on_the_cpu_runs_eager_without_counting_tiles(capsys, tmp_path, reports, monkeypatch):
    def no_counting(*args):
        raise AssertionError("auto on the CPU reads no image headers")

    monkeypatch.setattr(compile_policy, "job_tiles", no_counting)
    code, out, err = _upscale(capsys, tmp_path, "--tile", 16)  # auto is the default
    assert code == 0, err
    assert reports[0].compile.tiles == 0 and "note" not in err and "compiled" not in out


def test_a_bad_choice_is_one_usage_error(capsys, tmp_path):
    code, _, err = _upscale(capsys, tmp_path, "--compile", "yes")
    assert code == 2
    one_error_line(err, "--compile")


def test_on_and_off_are_what_they_say():
    for kinds in ({"cpu"}, {"cuda"}, {"cpu", "cuda"}):
        assert should_compile("on", kinds, tiles=1) and not should_compile("off", kinds, tiles=10**6)


def test_auto_never_compiles_on_the_cpu():
    assert PAYBACK["cpu"].min_tiles == math.inf
    assert not should_compile("auto", {"cpu"}, tiles=10**6)
    assert not should_compile("auto", {"cpu", "cuda"}, tiles=10**6)  # one setting for a mixed pool


def test_auto_on_cuda_compiles_large_jobs_only(monkeypatch):
    monkeypatch.setattr(compile_policy, "compiler_ready", lambda kind: True)
    assert not should_compile("auto", {"cuda"}, tiles=CUDA_MIN_TILES - 1)
    assert should_compile("auto", {"cuda"}, tiles=CUDA_MIN_TILES)
    # each tile shape compiles once, in each worker
    assert not should_compile("auto", {"cuda"}, tiles=CUDA_MIN_TILES, shapes=2)
    assert not should_compile("auto", {"cuda"}, tiles=CUDA_MIN_TILES, workers=2)
    assert should_compile("auto", {"cuda"}, tiles=4 * CUDA_MIN_TILES, shapes=2, workers=2)


def test_auto_without_a_compiler_is_eager(monkeypatch):
    monkeypatch.setattr(compile_policy, "compiler_ready", lambda kind: False)
    assert pays("cuda", CUDA_MIN_TILES)
    assert not should_compile("auto", {"cuda"}, tiles=10 * CUDA_MIN_TILES)


def test_job_tiles_count_the_plan_tiles_per_tile_shape(tmp_path):
    desc = load(TINY)
    big = [rgb(tmp_path / f"big{i}.png", h=40, w=72) for i in range(2)]
    small = rgb(tmp_path / "small.png", h=24, w=24)
    sideways = tmp_path / "sideways.jpg"  # stored 72 wide and 40 high, shown turned a quarter
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.open(big[0]).save(sideways, exif=exif)
    settings = Settings(tile=32, overlap=8)
    # 2 rows x 3 columns of 32 px tiles in each big one; one 24 px tile: another shape
    assert job_tiles(desc, [*big, small], settings) == (2 * 6 + 1, 2)
    assert compile_policy.image_size(str(sideways)) == (72, 40)
    assert job_tiles(desc, [str(sideways)], settings) == (6, 1)
    assert job_tiles(desc, [str(tmp_path / "missing.png")], settings) == (0, 0)


@pytest.mark.parametrize(
    ("devices", "ray", "device", "concurrency", "expected"),
    [
        (None, None, "cpu", 0, ({"cpu"}, 1)),
        (["cuda:0", "cuda:1", "cuda:1"], None, "auto", 0, ({"cuda"}, 3)),
        (["cpu", "cuda:0"], None, "auto", 0, ({"cpu", "cuda"}, 2)),
        (None, "", "cuda", 4, ({"cuda"}, 4)),
        (None, "", "auto", 0, ({"cpu"}, 1)),  # Ray's actors may land anywhere: auto stays eager
    ],
)
def test_the_job_decides_for_its_device_kinds_and_workers(
    monkeypatch, devices, ray, device, concurrency, expected
):
    asked = []
    monkeypatch.setattr(
        upscale,
        "decide",
        lambda policy, desc, sources, settings, kinds, workers: asked.append((kinds, workers)),
    )
    args = SimpleNamespace(devices=devices, ray=ray, device=device, concurrency=concurrency, compile="auto")
    jobs = [SimpleNamespace(source=f"{i}.png") for i in range(5)]
    where = torch.device(device) if devices is None and ray is None else None  # as run() passes it
    upscale._compiles(args, None, Settings(), jobs, where, devices)
    assert asked == [expected]
