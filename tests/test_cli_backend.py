"""``upscale --backend onnxruntime|openvino``: the exported graph under the same engine gives the
same image as PyTorch (fp32: within 1e-4 before the PNG is written), with the same tiles."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
import torch
from cli_helpers import rgb, run_cli
from export_helpers import tiny_descriptor
from PIL import Image
from safetensors.torch import save_file
from tiny_models import TINY

from srt.cli import backends, choices
from srt.cli.device import make_host
from srt.engine.runner import Settings, upscale


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path, monkeypatch):
    """Exports go to this test's folder, not the user's cache."""
    folder = tmp_path / "onnx-cache"
    monkeypatch.setenv(backends.CACHE_ENV, str(folder))
    return folder


def _host():
    return make_host(torch.device("cpu"), progress=lambda done, total: None, warn=lambda message: None)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])  # both installed by requirements-dev.txt
def test_same_image_through_the_engine(backend, onnx_cache):
    """Tiles, overlap and blending are the engine's: the runtime computes each 24x24 tile (the
    model's internal padding in its graph), so the image matches PyTorch's."""
    desc = tiny_descriptor("SwinIR")
    image = torch.rand(1, 38, 53, 3, generator=torch.Generator().manual_seed(3))
    settings = Settings(tile=22, overlap=6, precision="fp32")
    lines = io.StringIO()
    graph = backends.graph_descriptor(desc, backend, "ab" * 32, lines, quiet=False)
    expected = upscale(desc, image, settings, _host())
    got = upscale(graph, image, settings, _host())
    assert (
        got.report.tile == expected.report.tile == (22, 22)
        and got.report.tiles_run == expected.report.tiles_run
    )
    assert (got.image - expected.image).abs().max().item() <= 1e-4
    exported = sorted(p.name for p in onnx_cache.iterdir())  # one tile shape: one file, traced to it
    assert len(exported) == 1 and exported[0].startswith("abababababababab-22x22-fp32-srt")
    assert lines.getvalue().count("exporting the model") == 1
    # a second run (a new process would find the same file) exports nothing
    again = backends.graph_descriptor(desc, backend, "ab" * 32, lines, quiet=False)
    upscale(again, image, settings, _host())
    assert lines.getvalue().count("exporting the model") == 1


@pytest.fixture
def checkpoint(tmp_path) -> str:
    model = TINY["SwinIR"]()
    path = tmp_path / "tiny_swinir_x2.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def test_cli_backend_writes_the_same_png(capsys, tmp_path, checkpoint):
    source = rgb(tmp_path / "in.png", h=30, w=41)
    common = [source, "--model", checkpoint, "--tile", 20, "--overlap", 4, "--precision", "fp32"]
    code, _, err = run_cli(capsys, "upscale", *common, "-o", tmp_path / "torch.png")
    assert code == 0, err
    code, _, err = run_cli(capsys, "upscale", *common, "-o", tmp_path / "ort.png", "--backend", "onnxruntime")
    assert code == 0, err
    assert "exporting the model for onnxruntime at 20x20 fp32" in err
    a = np.asarray(Image.open(tmp_path / "torch.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "ort.png"), dtype=np.int16)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # within 1e-4 before rounding to 8 bits


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--device", "cuda"], "--device cuda"),
        (["--precision", "bf16"], "--precision bf16"),
        (["--devices", "cpu,cpu"], "--devices"),
    ],
    ids=["cuda", "bf16", "devices"],
)
def test_cli_backend_refuses_what_it_does_not_run(capsys, tmp_path, checkpoint, extra, named):
    argv = [rgb(tmp_path / "in.png"), "--model", checkpoint, "-o", tmp_path / "o.png"]
    code, _, err = run_cli(capsys, "upscale", *argv, "--backend", "onnxruntime", *extra)
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err


def test_cli_backend_without_its_package(capsys, tmp_path, checkpoint, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    source = rgb(tmp_path / "in.png")
    code, _, err = run_cli(
        capsys, "upscale", source, "--model", checkpoint, "-o", tmp_path / "o.png", "--backend", "openvino"
    )
    assert code == 2 and "needs openvino" in err and "pip install" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()


def test_backend_choices_match():
    assert choices.BACKENDS == backends.BACKENDS
