"""Scaling ``upscale`` out: worker processes per device (``--devices``), Ray (``--ray``), resuming.

Every path must write the very files the single-process path writes (byte for byte), report a
corrupt image by name while the rest finish, and leave no partial file when stopped. Runs with
the tiny Compact x2 model and two CPU "devices"; the Ray test starts a local Ray with CPU actors.
"""

from __future__ import annotations

import os
import time

import pytest
from cli_helpers import compact_checkpoint, folder_files, rgb, run_cli

from srt.cli import pool
from srt.cli.errors import CliError
from srt.cli.outputs import Job
from srt.cli.resume import is_complete_png, read_log
from srt.cli.streams import LineStream
from srt.cli.upscaler import RunSpec
from srt.engine.host import Settings

IMAGES = {"a.png": (20, 24), "b.jpg": (16, 20), "c.png": (24, 16), "d.webp": (18, 18), "e.png": (12, 28)}


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> str:
    return compact_checkpoint(tmp_path_factory.mktemp("models"))


@pytest.fixture
def photos(tmp_path):
    """A folder of five small images and one corrupt file."""
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, (name, (h, w)) in enumerate(IMAGES.items()):
        rgb(folder / name, h, w, seed=seed)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return folder


def _contents(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in folder_files(folder)}


# CPU kernels split sums by thread, so fp32 results (and rarely an 8-bit value) depend on the thread
# count: every run here uses one thread per process, as a user wanting identical files would.
ONE_THREAD = ("--threads", "1")


def _one_process(capsys, compact, photos, out) -> dict[str, bytes]:
    code, _, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 1 and "broken.png" in err  # the corrupt file is reported, the others written
    return _contents(out)


def _check_same_run(code, stdout, err, out, reference) -> None:
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "broken.png" in errors[0] and "cannot read" in errors[0], err
    assert "5 of 6 images written" in stdout and "1 failed" in stdout, stdout
    assert _contents(out) == reference  # the same PNG files, byte for byte
    assert not [n for n in os.listdir(out) if n.endswith(".part")]


def test_two_cpu_workers_write_what_one_process_writes(compact, photos, tmp_path, capsys):
    reference = _one_process(capsys, compact, photos, tmp_path / "one")
    assert sorted(reference) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    out = tmp_path / "two"
    code, stdout, err = run_cli(
        capsys, "upscale", photos, "-o", out, "--model", compact, "--devices", "cpu,cpu"
    )
    _check_same_run(code, stdout, err, out, reference)
    assert len([line for line in stdout.splitlines() if " -> " in line]) == 5  # a summary line per image


def test_ray_with_cpu_actors_writes_what_one_process_writes(compact, photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a local throw-away Ray, no token
    reference = _one_process(capsys, compact, photos, tmp_path / "one")
    out = tmp_path / "ray"
    code, stdout, err = run_cli(
        capsys, "upscale", photos, "-o", out, "--model", compact, "--ray", "--concurrency", "2", *ONE_THREAD
    )
    _check_same_run(code, stdout, err, out, reference)


def test_a_rerun_skips_what_is_written_and_redoes_what_is_not(compact, photos, tmp_path, capsys):
    out = tmp_path / "out"
    reference = _one_process(capsys, compact, photos, out)
    assert read_log(str(out))["a.png"]["identity"]["model"] == os.path.basename(compact)
    os.remove(out / "b.png")  # never written
    (out / "c.png").write_bytes((out / "c.png").read_bytes()[:100])  # cut short by another tool
    assert not is_complete_png(str(out / "c.png")) and is_complete_png(str(out / "a.png"))
    before = {name: os.stat(out / name).st_mtime_ns for name in ("a.png", "d.png", "e.png")}
    time.sleep(0.01)
    code, stdout, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 1 and "broken.png" in err  # the corrupt input is tried again, and fails again
    assert "resuming: 3 of 6 images are already in" in err
    assert "1 image in" in err and "changed since: making them again" in err  # c.png
    assert "2 of 3 images written" in stdout and "3 were already there" in stdout, stdout
    assert _contents(out) == reference
    assert {name: os.stat(out / name).st_mtime_ns for name in before} == before  # not written again


def test_outputs_of_other_settings_are_made_again_not_resumed(compact, photos, tmp_path, capsys):
    """The log traces every output to its settings: another overlap is another job's image."""
    out = tmp_path / "out"
    _one_process(capsys, compact, photos, out)
    code, stdout, err = run_cli(
        capsys, "upscale", photos, "-o", out, "--model", compact, "--overlap", "8", *ONE_THREAD
    )
    assert code == 1 and "5 images in" in err and "made with other settings" in err, err
    assert "5 of 6 images written" in stdout and "already there" not in stdout
    assert {e["identity"]["settings"]["overlap"] for e in read_log(str(out)).values()} == {8}


def test_files_no_job_wrote_need_overwrite(compact, photos, tmp_path, capsys):
    """An output the log does not know may be somebody's file: refused, nothing touched."""
    out = tmp_path / "out"
    _one_process(capsys, compact, photos, out)
    (out / "zz.png").write_bytes(b"mine")
    (photos / "zz.jpg").write_bytes((photos / "a.png").read_bytes())
    before = _contents(out)
    code, _, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 2 and "zz.png" in err and "--overwrite" in err
    assert _contents(out) == before


def test_stopping_the_workers_leaves_no_partial_file(compact, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = [Job(str(photos / name), str(out / f"{i}.png")) for i, name in enumerate(sorted(IMAGES) * 4)]
    leftover = out / ".3.png.job1-killed.part"  # what a killed worker's write leaves behind
    leftover.write_bytes(b"half")
    running = out / ".3.png.job2-4f2a.part"  # another job's write in progress: not ours to remove
    running.write_bytes(b"half")
    spec = RunSpec(compact, Settings(), overwrite=False, quiet=True, threads=1, job_id="job1")
    outcomes = pool.run(spec, jobs, ["cpu", "cpu"], err=open(os.devnull, "w"))
    first = next(outcomes)
    assert first.error is None, first.error
    outcomes.close()  # what an interrupt does: the generator's cleanup stops every worker
    names = os.listdir(out)
    assert [n for n in names if n.endswith(".part")] == [running.name], names
    names.remove(running.name)
    assert all(is_complete_png(str(out / n)) for n in names)
    assert len(names) < len(jobs)  # it did stop


@pytest.mark.parametrize("gpus", [0, 2])
def test_devices_are_checked_before_anything_runs(gpus, monkeypatch):
    monkeypatch.setattr(pool.torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(pool.torch.cuda, "device_count", lambda: gpus)
    assert pool.parse_devices("cpu,cpu") == ["cpu", "cpu"]
    if gpus:
        assert pool.parse_devices("all") == ["cuda:0", "cuda:1"]
        assert pool.parse_devices("1, cuda:0,1") == ["cuda:1", "cuda:0", "cuda:1"]
    bad = ["gpu", "cpu,x", "2", "cuda:7"] + ([] if gpus else ["all", "0"])
    for text in bad:
        with pytest.raises(CliError, match="--devices"):
            pool.parse_devices(text)


def test_worker_warnings_go_on_line_by_line():
    """The stream a --devices worker and a Ray actor print warnings to hands on whole lines only."""
    lines: list[str] = []
    stream = LineStream(lines.append)
    assert stream.write("warning: one\nwarning: tw") == 24 and lines == ["warning: one"]
    print("o", file=stream)
    assert lines == ["warning: one", "warning: two"] and stream.buffer == "" and not stream.isatty()
