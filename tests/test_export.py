"""ONNX export (``arch.export_onnx``, ``python -m cli export``): every family, fixed and dynamic
sizes, fp32 and half precision, run in onnxruntime against our torch model.

Each family's tiny model (``tests/tiny_models.py``, official initialisation) is exported once per
kind in two worker processes (an export is single-threaded Python: tracing and translation), then
the files are checked here. fp32 bounds: what float32 promises for a different op order (1e-4 of
the output's scale), not one machine's rounding. fp16: PSNR against our fp32 output at the
README's lowest fp16 figure (59 dB, RGT) minus 4 dB.
"""

from __future__ import annotations

import importlib.util
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from cli_helpers import compact_checkpoint, one_error_line, run_cli
from export_helpers import export_job, run_torch, tiny_descriptor
from model_helpers import register_pack
from safetensors.torch import save_file
from tiny_models import TINY

from srt.arch import export_onnx
from srt.arch.export import DEFAULT_TILE, EXPORT_PACKAGES, PRECISIONS, MissingExportPackages
from srt.arch.export_info import METADATA_KEYS, pack_version
from srt.arch.onnx_file import read_metadata
from srt.cli import choices
from srt.cli import export as cli_export

FAMILIES = sorted(TINY)
KINDS = ("fixed", "dynamic", "fp16")
FP32_BOUND = 1e-4  # relative to the output's largest magnitude (at least 1)
FP16_FLOOR_DB = 55.0  # README: fp16 59-79 dB against fp32 (RGT lowest), minus 4 dB


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Every family exported once per kind (and one bf16 export), two at a time."""
    folder = tmp_path_factory.mktemp("onnx")
    jobs = [(name, kind, str(folder / f"{name}-{kind}.onnx")) for name in FAMILIES for kind in KINDS]
    jobs.append(("SwinIR", "bf16", str(folder / "SwinIR-bf16.onnx")))
    # the slowest first, so neither worker ends with a long job alone
    jobs.sort(key=lambda job: (job[1] != "dynamic", job[0] not in ("DAT", "DRCT", "ATD")))
    # each worker registers the checkout as ``srt`` first (it starts without the tests' conftest)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn, initializer=register_pack) as pool:
        results = pool.map(export_job, jobs)
        return {(name, kind): result for (name, kind, _), result in zip(jobs, results, strict=True)}


def result_of(exports, name: str, kind: str) -> dict:
    result = exports[(name, kind)]
    assert "error" not in result, result.get("error")
    return result


def session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def reference(name: str):
    """The torch model the export was made from (same seed), computing what its graph computes."""
    desc = tiny_descriptor(name)
    desc.model.prepare_export()  # ATD: the stable category order, as on CUDA
    return desc


def photo_like(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth image-like input (random at low resolution, upsampled): what the models are made for."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(1, h // 4), max(1, w // 4), generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def fp32_diff(got: np.ndarray, expected: torch.Tensor) -> float:
    """Largest difference relative to the output's scale (at least 1)."""
    expected = expected.numpy()
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max()) / max(1.0, float(np.abs(expected).max()))


def odd_size(result: dict) -> tuple[int, int]:
    """A size the dynamic graph serves that it was not traced at: odd numbers of the size multiple,
    not square, from the smallest of its range."""
    m = result["size_multiple"]
    (low_h, high_h), (low_w, high_w) = result["height_range"], result["width_range"]
    kh = -(-low_h // m) | 1  # odd
    kw = max(kh + 2, -(-low_w // m)) | 1
    h, w = kh * m, kw * m
    assert (high_h is None or h <= high_h) and (high_w is None or w <= high_w), (h, w, result)
    assert (h, w) != tuple(result["tile"])
    return h, w


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


# ---- every family ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_fixed_export_matches_torch(exports, name):
    result = result_of(exports, name, "fixed")
    h, w = result["tile"]
    onnx.checker.check_model(result["path"], full_check=True)
    s = session(result["path"])
    assert s.get_inputs()[0].shape == [1, 3, h, w] and s.get_inputs()[0].type == "tensor(float)"
    x = photo_like(h, w)
    got = s.run(["output"], {"input": x.numpy()})[0]
    diff = fp32_diff(got, run_torch(reference(name), x))
    assert diff <= FP32_BOUND, (name, diff)


@pytest.mark.parametrize("name", FAMILIES)
def test_dynamic_export_runs_other_sizes(exports, name):
    result = result_of(exports, name, "dynamic")
    s = session(result["path"])
    assert s.get_inputs()[0].shape == [1, 3, "height", "width"]
    scale = int(TINY[name]().config.scale)
    assert s.get_outputs()[0].shape == [1, 3, f"height*{scale}", f"width*{scale}"]
    assert result["verified"].startswith("onnxruntime vs torch at ")  # export_onnx checked it too
    desc = reference(name)
    for h, w in (odd_size(result), tuple(result["tile"])):
        x = photo_like(h, w, seed=h + w)
        got = s.run(["output"], {"input": x.numpy()})[0]
        assert got.shape == (1, 3, h * scale, w * scale)
        diff = fp32_diff(got, run_torch(desc, x))
        assert diff <= FP32_BOUND, (name, (h, w), diff)


@pytest.mark.parametrize("name", FAMILIES)
def test_fp16_export_keeps_the_precision_policy(exports, name):
    """The fp16 graph is the model as the engine converts it (float32 residual stream and fp16
    scaling inside): finite, and as close to fp32 as our fp16 torch run."""
    result = result_of(exports, name, "fp16")
    h, w = result["tile"]
    s = session(result["path"])
    assert s.get_inputs()[0].type == "tensor(float16)" and s.get_outputs()[0].type == "tensor(float16)"
    x = photo_like(h, w, seed=1)
    got = s.run(["output"], {"input": x.half().numpy()})[0].astype(np.float32)
    assert np.isfinite(got).all()
    fp32 = run_torch(reference(name), x).numpy()
    db = psnr(got, fp32)
    torch_db = psnr(_torch_fp16(reference(name), x), fp32)
    print(f"{name}: fp16 onnxruntime {db:.1f} dB, fp16 torch {torch_db:.1f} dB vs fp32")
    assert db >= FP16_FLOOR_DB, (name, db, torch_db)


def _torch_fp16(desc, x: torch.Tensor) -> np.ndarray:
    model = desc.model.half()  # as the engine's placement converts it
    with torch.inference_mode():
        return model(x.half()).float().numpy()


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("kind", ["fixed", "dynamic", "fp16"])
def test_metadata(exports, name, kind):
    result = result_of(exports, name, kind)
    meta = read_metadata(result["path"])
    assert set(meta) == set(METADATA_KEYS)
    desc = tiny_descriptor(name)
    m = desc.model.preferred_tile_multiple()
    h, w = result["tile"]
    expected = {
        "architecture": desc.architecture.id,
        "variant": desc.srt_info.variant,
        "implementation": "comfyui-sr-transformers",
        "scale": str(desc.scale),
        "input_channels": "3",
        "output_channels": "3",
        "value_range": "0-1",
        "shape": "dynamic" if kind == "dynamic" else "fixed",
        "tile": f"{h}x{w}",
        "size_multiple": str(m),
        "precision": "fp16" if kind == "fp16" else "fp32",
        "pack_version": pack_version(),
    }
    assert {k: meta[k] for k in expected} == expected
    assert pack_version() != "unknown" and meta["exporter"].startswith(
        f"comfyui-sr-transformers {pack_version()}"
    )
    low, high = desc.model.export_size_range(h, w)[0] if kind == "dynamic" else (h, h)
    assert meta["height_range"] == f"{low}-{'' if high is None else high}"


def test_bf16_export(exports):
    """bf16 exports (onnxruntime's CPU has no bf16 kernels to run it here: TensorRT builds it with
    --stronglyTyped): a valid file whose input and weights are bf16."""
    result = result_of(exports, "SwinIR", "bf16")
    model = onnx.load(result["path"])
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    assert read_metadata(result["path"])["precision"] == "bf16"
    assert any(t.data_type == onnx.TensorProto.BFLOAT16 for t in model.graph.initializer)


# ---- the command line -------------------------------------------------------------------------------


@pytest.fixture
def swinir_checkpoint(tmp_path) -> str:
    """A tiny SwinIR checkpoint file (the loader reads its config from the weights)."""
    model = TINY["SwinIR"]()
    path = tmp_path / "tiny_swinir_x2.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def test_cli_export_writes_a_checked_file(capsys, tmp_path, swinir_checkpoint):
    out = tmp_path / "tiny.onnx"
    code, stdout, err = run_cli(capsys, "export", swinir_checkpoint, "-o", out, "--tile", 18, "--verify")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith(f"wrote {out}: SwinIR") and "fp32" in lines[0]
    assert "fixed input (1, 3, 20, 20) -> (1, 3, 40, 40)" in stdout  # 18 rounded up to the window (4)
    assert "checked: onnxruntime vs torch at 20x20" in stdout
    assert read_metadata(out)["tile"] == "20x20" and not list(tmp_path.glob(".*.part"))
    # an existing output is refused without --overwrite
    code, _, err = run_cli(capsys, "export", swinir_checkpoint, "-o", out)
    assert code == 2
    one_error_line(err, str(out))


def test_cli_export_of_a_spandrel_architecture(capsys, tmp_path):
    """Architectures we hand to spandrel export where their code traces (Compact)."""
    out = tmp_path / "compact.onnx"
    code, _, err = run_cli(capsys, "export", compact_checkpoint(tmp_path), "-o", out, "--tile", 16)
    assert code == 0, err
    meta = read_metadata(out)
    assert meta["implementation"] == "spandrel" and meta["architecture"] == "Compact" and meta["scale"] == "2"


def test_cli_export_of_an_architecture_that_does_not_trace(capsys, tmp_path):
    """spandrel's SPAN rewrites its weights inside forward: one line naming it, exit 2, no file."""
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    path = tmp_path / "span_x2.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    out = tmp_path / "span.onnx"
    code, _, err = run_cli(capsys, "export", path, "-o", out, "--tile", 16)
    assert code == 2
    one_error_line(err, "SPAN (spandrel's implementation) does not export to ONNX")
    assert "run it with PyTorch instead" in err and not out.exists()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["export", "missing_model.pth", "-o", "x.onnx"], "missing_model.pth"),
        (["export", "SRT_ATD-tiny_x2", "-o", "x.png"], "x.png"),
        (["export", "SRT_ATD-tiny_x2", "-o", "no_such_folder/x.onnx"], "no_such_folder"),
        (["export", "SRT_ATD-tiny_x2", "-o", "x.onnx", "--precision", "fp8"], "fp8"),
    ],
    ids=["unknown-model", "not-onnx", "no-folder", "bad-precision"],
)
def test_cli_export_bad_input_is_one_line(capsys, tmp_path, monkeypatch, argv, named):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    one_error_line(err, named)


def test_cli_export_without_the_onnx_packages(capsys, tmp_path, monkeypatch):
    """Without onnx / onnxscript: exit 2 and the pip command, before torch or the model loads."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    code, _, err = run_cli(capsys, "export", "SRT_ATD-tiny_x2", "-o", tmp_path / "x.onnx")
    assert code == 2
    one_error_line(err, "pip install -r requirements-export.txt")
    assert "needs onnx" in err and not (tmp_path / "x.onnx").exists()


def test_python_api_without_the_onnx_packages(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a)
    )
    with pytest.raises(
        MissingExportPackages, match=r"needs onnxscript: pip install -r requirements-export\.txt"
    ):
        export_onnx(tiny_descriptor("SwinIR"), tmp_path / "x.onnx")


def test_cli_choices_match_the_exporter():
    """The parser's torch-free copies of the exporter's values."""
    assert choices.EXPORT_PRECISIONS == tuple(PRECISIONS)
    assert choices.EXPORT_TILE == DEFAULT_TILE
    assert cli_export.EXPORT_PACKAGES == EXPORT_PACKAGES
