"""The command line loses nothing: outputs never replace an input, an existing file only with
``--overwrite``, clashing names all survive, an interrupted write leaves no partial file, and one
failing image does not stop the others."""

from __future__ import annotations

import os

import pytest
from cli_helpers import compact_checkpoint, folder_files, one_error_line, rgb, run_cli
from PIL import Image

from srt.cli import upscaler as cli_upscale
from srt.cli.outputs import output_names, plan_outputs
from srt.cli.resume import RECORD_NAME


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> str:
    return compact_checkpoint(tmp_path_factory.mktemp("models"))


def _files(folder) -> dict[str, bytes]:
    """Every file in ``folder`` (temporary ones too) but the job record of a folder run."""
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if name != RECORD_NAME}


def test_naming_rule_is_a_function_of_the_inputs_alone(tmp_path):
    names = ["a/x.png", "b/x.png", "c/x.png", "c/x_2.png", "d/X.jpg", "d/y.webp"]
    # inputs sharing a name (ignoring case) keep their extension; one file name in two folders is numbered
    expected = ["x.png.png", "x.png_2.png", "x.png_3.png", "x_2.png", "X.jpg.png", "y.png"]  # x: .png and .jpg
    assert output_names(names) == expected
    # files added later with other names rename nothing; a name of the same stem renames that stem only
    assert output_names([*names, "e/z.png", "e/a.tif"])[:6] == expected
    assert output_names(["d/a.jpg", "d/b.png"]) == ["a.png", "b.png"]
    assert output_names(["d/a.jpg", "d/b.png", "d/a.webp"]) == ["a.jpg.png", "b.png", "a.webp.png"]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        rgb(tmp_path / folder / "x.png")
    inputs = [str(tmp_path / "a"), str(tmp_path / "b")]
    first = plan_outputs(inputs, str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    for job in first:
        rgb(job.target)
    assert plan_outputs(inputs, str(tmp_path / "out")) == first  # existing outputs change nothing


def test_three_inputs_of_one_name_all_survive(compact, tmp_path, capsys):
    sizes = {"a": (10, 12), "b": (14, 12), "c": (12, 16)}
    for folder, (h, w) in sizes.items():
        (tmp_path / folder).mkdir()
        rgb(tmp_path / folder / "x.png", h, w, seed=h + w)
    inputs = [tmp_path / folder for folder in sizes]
    code, _, err = run_cli(capsys, "upscale", *inputs, "-o", tmp_path / "out", "--model", compact)
    assert code == 0, err
    written = {name: Image.open(tmp_path / "out" / name).size for name in folder_files(tmp_path / "out")}
    assert written == {"x.png": (24, 20), "x_2.png": (24, 28), "x_3.png": (32, 24)}


def test_output_folder_that_holds_the_inputs_never_overwrites_one(compact, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rgb(photos / "a.png", seed=2)  # its output would be photos/a.png: itself
    rgb(photos / "b.jpg", seed=3)
    before = _files(photos)
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "upscale", photos, "-o", photos, "--model", compact, *extra)
        assert code == 2
        one_error_line(err, os.path.join(str(photos), "a.png"))
        assert "input" in err and "-o" in err
        assert _files(photos) == before  # nothing written, not even b's output
    code, _, err = run_cli(capsys, "upscale", photos / "a.png", "-o", photos / "a.png", "--model", compact)
    assert code == 2 and "input" in err and _files(photos) == before


def test_an_output_folder_that_holds_the_inputs_resumes(compact, tmp_path, capsys):
    """``upscale same/ -o same/`` twice: the second run resumes (outputs are not taken as inputs)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rgb(photos / "a.jpg", seed=1)
    rgb(photos / "b.webp", seed=2)
    code, _, err = run_cli(capsys, "upscale", photos, "-o", photos, "--model", compact)
    assert code == 0, err
    written = _files(photos)
    assert {"a.png", "b.png"} <= set(written)
    code, out, err = run_cli(capsys, "upscale", photos, "-o", photos, "--model", compact)
    assert code == 0 and "nothing to do: all 2 images" in out, (out, err)
    assert _files(photos) == written


def test_existing_outputs_need_overwrite(compact, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    rgb(src / "a.png", seed=1)
    rgb(src / "b.png", seed=2)
    (out / "b.png").write_bytes(b"an earlier result")
    code, _, err = run_cli(capsys, "upscale", src, "-o", out, "--model", compact)
    assert code == 2
    one_error_line(err, os.path.join(str(out), "b.png"))
    assert "--overwrite" in err
    assert _files(out) == {"b.png": b"an earlier result"}  # not touched, and a.png not written either
    code, _, err = run_cli(capsys, "upscale", src, "-o", out, "--model", compact, "--overwrite")
    assert code == 0, err
    assert {name: Image.open(out / name).size for name in folder_files(out)} == {
        "a.png": (48, 40),
        "b.png": (48, 40),
    }
    one = tmp_path / "one.png"
    one.write_bytes(b"keep me")
    code, _, err = run_cli(capsys, "upscale", src / "a.png", "-o", one, "--model", compact)
    assert code == 2 and "--overwrite" in err and one.read_bytes() == b"keep me"


def test_compare_never_writes_over_its_images(tmp_path, capsys):
    a, b, ref = (rgb(tmp_path / f"{n}.png", 16, 16, seed=i) for i, n in enumerate(("a", "b", "ref")))
    before = _files(tmp_path)
    for target in (a, b, ref):
        for extra in ([], ["--overwrite"]):
            code, _, err = run_cli(capsys, "compare", a, b, "--reference", ref, "-o", target, *extra)
            assert code == 2 and "input" in err, err
            assert _files(tmp_path) == before
    (tmp_path / "cmp.png").write_bytes(b"an earlier comparison")
    code, _, err = run_cli(capsys, "compare", a, b, "-o", tmp_path / "cmp.png")
    assert code == 2 and "--overwrite" in err.splitlines()[-1]
    assert (tmp_path / "cmp.png").read_bytes() == b"an earlier comparison"
    code, _, _ = run_cli(capsys, "compare", a, b, "-o", tmp_path / "cmp.png", "--overwrite")
    assert code == 0 and Image.open(tmp_path / "cmp.png").size == (32, 16)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_no_partial_file(compact, tmp_path, capsys, monkeypatch, failure):
    out = tmp_path / "out"
    out.mkdir()
    rgb(tmp_path / "a.png")

    def half_written(self, fp, *args, **kwargs):  # the encoder stops half way through the file
        if isinstance(fp, (str, os.PathLike)):
            with open(fp, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n half")
        else:
            fp.write(b"\x89PNG\r\n\x1a\n half")
        raise failure("stopped while writing")

    monkeypatch.setattr(Image.Image, "save", half_written)
    for earlier, extra in ({}, []), ({"a.png": b"an earlier result"}, ["--overwrite"]):
        for name, data in earlier.items():
            (out / name).write_bytes(data)
        code, _, err = run_cli(capsys, "upscale", tmp_path / "a.png", "-o", out, "--model", compact, *extra)
        assert code == (130 if failure is KeyboardInterrupt else 1)  # a failed write: 1, as under Ray
        assert err.strip().splitlines()[-1].startswith("error: ")
        assert _files(out) == earlier  # no partial PNG, no temporary file, the earlier file intact


def test_one_bad_image_does_not_stop_a_folder(compact, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    rgb(src / "a_value.png", 10, 13)  # the engine raises ValueError for width 13
    rgb(src / "b_type.png", 10, 11)  # ... and TypeError for width 11
    (src / "c_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rgb(src / "d_good.png", 10, 12)
    engine_upscale = cli_upscale.upscale

    def failing(desc, image, *args, **kwargs):
        if image.shape[2] == 13:
            raise ValueError("a value the engine cannot take")
        if image.shape[2] == 11:
            raise TypeError("a type the engine cannot take")
        return engine_upscale(desc, image, *args, **kwargs)

    monkeypatch.setattr(cli_upscale, "upscale", failing)
    code, stdout, err = run_cli(capsys, "upscale", src, "-o", tmp_path / "out", "--model", compact)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines) and "Traceback" not in err
    for line, name, reason in zip(
        lines,
        ("a_value.png", "b_type.png", "c_corrupt.png"),
        ("ValueError", "TypeError", "cannot read"),
        strict=True,
    ):
        assert name in line and reason in line, line
    assert folder_files(tmp_path / "out") == ["d_good.png"]
    assert "1 of 4 images written" in stdout and "3 failed" in stdout
