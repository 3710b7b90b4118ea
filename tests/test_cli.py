"""The command line (``python -m cli``): upscale files and folders, info, compare, and bad input.

Runs in-process through ``srt.cli.main`` (the checkout registered as ``srt`` by conftest) with a
tiny spandrel Compact x2 model, plus one real ``python -m cli --help`` from the repository root.
Where outputs go and that nothing is lost: ``test_cli_outputs.py``.
"""

from __future__ import annotations

import ast
import io
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from cli_helpers import compact_checkpoint, folder_files, one_error_line, rgb, run_cli
from PIL import Image

from srt.cli import models as cli_models
from srt.cli.images import read_image, write_png
from srt.cli.progress import TileProgress
from srt.engine.comparison import compare

REPO = pathlib.Path(__file__).resolve().parents[1]
ATD = REPO / "tests" / "assets" / "ATD_light_x2_trained.safetensors"


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> str:
    return compact_checkpoint(tmp_path_factory.mktemp("models"))


def _png16_paeth(path, samples: np.ndarray) -> None:
    """A 16-bit PNG written independently of the CLI: every row with the Paeth filter."""
    h, w, c = samples.shape
    rows = samples.astype(">u2").view(np.uint8).reshape(h, -1).astype(np.int16)
    bpp = 2 * c
    up = np.vstack([np.zeros_like(rows[:1]), rows[:-1]])
    left = np.hstack([np.zeros_like(rows[:, :bpp]), rows[:, :-bpp]])
    upleft = np.hstack([np.zeros_like(up[:, :bpp]), up[:, :-bpp]])
    p = left + up - upleft
    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    raw = np.hstack([np.full((h, 1), 4), (rows - pred) % 256]).astype(np.uint8)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes())) + chunk(b"IEND", b"")
    pathlib.Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + data)


def test_entry_point_runs_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert all(cmd in done.stdout for cmd in ("upscale", "info", "compare"))


def test_upscale_one_file(compact, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(
        capsys, "upscale", rgb(tmp_path / "in.jpg"), "-o", out, "--model", compact, "--tile", 16
    )
    assert code == 0 and err == ""
    assert Image.open(out).size == (48, 40) and Image.open(out).mode == "RGB"
    summary = stdout.strip().splitlines()
    assert len(summary) == 1
    assert all(part in summary[0] for part in ("compact_x2.safetensors", "float32", "tiles of 16x16", " s"))


def test_upscale_keeps_alpha_and_resizes_to_another_scale(compact, tmp_path, capsys):
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    pixels[..., 3] = np.linspace(0, 255, 16, dtype=np.uint8)[None, :]
    Image.fromarray(pixels).save(tmp_path / "rgba.png")
    code, _, _ = run_cli(
        capsys, "upscale", tmp_path / "rgba.png", "-o", tmp_path / "x4.png", "--model", compact, "--scale", 4
    )
    assert code == 0
    out = np.asarray(Image.open(tmp_path / "x4.png"))
    assert out.shape == (64, 64, 4)
    alpha = out[..., 3].astype(float)
    assert abs(alpha[:, :4].mean() - 0) < 20 and abs(alpha[:, -4:].mean() - 255) < 20  # the gradient survives
    assert np.ptp(alpha, axis=0).max() == 0  # alpha is not mixed with the colours


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_read_and_written_with_every_bit(compact, tmp_path, capsys, channels):
    rng = np.random.default_rng(channels)
    high = rng.integers(0, 256, (12, 12, channels)).astype(np.uint16) << 8
    low = rng.integers(0, 256, (12, 12, channels)).astype(np.uint16)
    _png16_paeth(tmp_path / "a.png", high)
    _png16_paeth(tmp_path / "b.png", high | low)  # the same 8 high bits: only the low byte differs
    picture = read_image(str(tmp_path / "b.png"))
    assert picture.bits == 16 and picture.pixels.shape == (12, 12, channels)
    assert np.array_equal(np.round(picture.pixels.numpy() * 65535).astype(np.uint16), high | low)
    for name in ("a", "b"):
        code, _, err = run_cli(
            capsys, "upscale", tmp_path / f"{name}.png", "-o", tmp_path / f"{name}_x2.png", "--model", compact
        )
        assert code == 0, err
    a, b = read_image(str(tmp_path / "a_x2.png")), read_image(str(tmp_path / "b_x2.png"))
    assert a.bits == b.bits == 16 and a.pixels.shape == (24, 24, channels)
    assert not torch.equal(a.pixels, b.pixels)


def test_16bit_writer_round_trips(tmp_path):
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 65536, (5, 7, 3)) / 65535.0).float()
    write_png(str(tmp_path / "w.png"), pixels, bits=16)
    assert torch.equal(read_image(str(tmp_path / "w.png")).pixels, pixels)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray(np.zeros((10, 30, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    im.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert read_image(str(tmp_path / "rotated.jpg")).pixels.shape == (30, 10, 3)


def test_upscale_folder_one_bad_file_does_not_stop_the_others(compact, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rgb(src / "a.png", seed=1)
    rgb(src / "b.jpg", seed=2)
    rgb(src / "c.webp", 12, 14, seed=3)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("not an image")
    code, stdout, err = run_cli(capsys, "upscale", src, "-o", tmp_path / "out", "--model", compact)
    assert code == 1
    one_error_line(err, "broken.png")
    assert folder_files(tmp_path / "out") == ["a.png", "b.png", "c.png"]
    assert Image.open(tmp_path / "out" / "c.png").size == (28, 24)
    assert "3 of 4 images written" in stdout


def test_default_model_is_found_by_its_pattern(compact, tmp_path, capsys, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(cli_models, "WEIGHTS_DIR", str(weights))
    code, _, err = run_cli(
        capsys, "upscale", rgb(tmp_path / "in.png"), "-o", tmp_path / "o.png", "--scale", 2
    )
    expected = os.path.join("weights", "SRT_*_x2.safetensors")
    assert code == 2
    one_error_line(err, expected)
    shutil.copy(compact, weights / "SRT_test-model_x2.safetensors")
    assert cli_models.default_models() == {2: str(weights / "SRT_test-model_x2.safetensors")}
    code, stdout, _ = run_cli(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--scale", 2)
    assert code == 0 and "SRT_test-model_x2.safetensors" in stdout


def test_info_shows_what_load_sr_model_shows(tmp_path, capsys):
    import importlib

    import comfy_stub

    models = tmp_path / "upscale_models"
    models.mkdir()
    shutil.copy(ATD, models / ATD.name)
    comfy_stub.install("0.33", str(tmp_path))
    try:
        node = importlib.import_module("srt.nodes.load_model").LoadModelNode
        node_text = node.execute(ATD.name).ui.args[0]
    finally:
        comfy_stub.uninstall()
    code, stdout, _ = run_cli(capsys, "info", models / ATD.name)
    assert code == 0 and stdout == node_text + "\n"
    assert "ATD-light x2" in stdout


def test_compare_reports_the_engine_metrics(tmp_path, capsys):
    paths = [rgb(tmp_path / f"{n}.png", 24, 24, seed=i) for i, n in enumerate(("a", "b", "ref"))]
    code, stdout, _ = run_cli(
        capsys,
        "compare",
        paths[0],
        paths[1],
        "--reference",
        paths[2],
        "--border-crop",
        2,
        "-o",
        tmp_path / "cmp.png",
    )
    assert code == 0
    images = [read_image(p).pixels[None] for p in paths]
    expected = compare(images[0], images[1], images[2], border=2)
    names = {"image_a": paths[0], "image_b": paths[1], "reference": paths[2]}
    assert stdout == expected.report(names) + "\n"
    assert "psnr/ssim outputs" not in stdout, "the node's wording"
    assert Image.open(tmp_path / "cmp.png").size == (72, 24)  # A | B | reference


def test_compare_refuses_images_of_other_sizes_unless_resize(tmp_path, capsys):
    """200x140 against 256x256 was stretched silently (a note after the table, exit 0)."""
    a, b = rgb(tmp_path / "a.png", 256, 256, seed=0), rgb(tmp_path / "b.png", 140, 200, seed=1)
    code, stdout, err = run_cli(capsys, "compare", a, b)
    assert code == 2 and stdout == "" and "differ in size" in err and "--resize" in err
    assert "b.png is 200x140" in err and "a.png is 256x256" in err
    code, stdout, err = run_cli(capsys, "compare", a, b, "--resize")
    assert code == 0 and err.startswith("note: ") and "b.png is 200x140: resized" in err
    assert "image_b" not in stdout + err


def test_bad_input_gives_one_line_and_a_nonzero_exit(compact, tmp_path, capsys):
    good = rgb(tmp_path / "good.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    cases = [
        (("upscale", tmp_path / "missing.png", "-o", tmp_path / "o.png", "--model", compact), "missing.png"),
        (("upscale", tmp_path / "broken.jpg", "-o", tmp_path / "o.png", "--model", compact), "broken.jpg"),
        (("upscale", good, "-o", tmp_path / "o.png", "--model", "no_such_model"), "no_such_model"),
        (("upscale", tmp_path / "empty", "-o", tmp_path / "out", "--model", compact), "empty"),
        (("upscale", good, "-o", tmp_path / "o.jpg", "--model", compact), "o.jpg"),
        (("upscale", good, "-o", tmp_path / "o.png", "--model", good), "good.png"),  # not a checkpoint
        (("upscale", good, "-o", tmp_path / "o.png", "--precision", "fp8"), "upscale"),
        (("info", tmp_path / "nothing.pth"), "nothing.pth"),
        (("compare", good, tmp_path / "missing.png"), "missing.png"),
    ]
    for argv, name in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        one_error_line(err, name)
    assert not (tmp_path / "o.png").exists()


def test_progress_bar_counts_tiles_and_estimates_time():
    stream, times = io.StringIO(), iter([0.0, 2.0, 4.0])
    bar = TileProgress(stream, "photo.png", enabled=True, now=lambda: next(times))
    bar(1, 4)
    bar(2, 4)
    bar.close()
    text = stream.getvalue()
    assert (
        "photo.png [" in text
        and "1/4 tiles  25%  0:02, ETA 0:06" in text
        and "2/4 tiles  50%  0:04, ETA 0:04" in text
    )
    assert text.endswith("\n")
    quiet = io.StringIO()
    TileProgress(quiet, "x", enabled=False)(1, 2)
    assert quiet.getvalue() == ""


def test_comfyui_never_imports_the_command_line():
    for path in [REPO / "__init__.py", *sorted((REPO / "nodes").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "cli" not in (node.module or "").split("."), f"{path} imports the command line"
