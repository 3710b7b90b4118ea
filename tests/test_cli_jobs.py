"""A job owns what it writes (issue 26): one job per output folder (a lock), resume only what the
log traces to this job's settings and inputs, temporaries and cleanup per job, no side effect of a
command refused at the start. In-process runs of the command line with the tiny Compact x2 model
(``--scale 4`` resizes its output: another job's images) and the shipped ATD-tiny x2.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import compact_checkpoint, rgb, run_cli

from srt.cli import upscaler as upscaler_module
from srt.cli.joblock import LOCK_NAME, JobLock
from srt.cli.resume import RECORD_NAME, read_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_THREAD = ("--threads", "1")


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> str:
    return compact_checkpoint(tmp_path_factory.mktemp("models"))


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, name in enumerate(["a.png", "b.jpg", "c.png", "d.png"]):
        rgb(folder / name, 16, 20, seed=seed)
    return folder


def pngs(folder) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder)) if n.endswith(".png")}


def test_an_interrupted_overwrite_is_never_taken_as_complete(compact, photos, tmp_path, capsys, monkeypatch):
    """x4 job; the x2 model --overwrite, stopped after its first image; the x2 command again: it
    redoes the three x4 images (the log names their model) instead of saying "nothing to do"."""
    out = tmp_path / "out"
    assert (
        run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, "--scale", "4", *ONE_THREAD)[0] == 0
    )
    x4 = pngs(out)
    writes = []
    real = upscaler_module.save_png

    def stop_after_first(*args, **kwargs):
        if writes:
            raise KeyboardInterrupt
        writes.append(args[0])
        real(*args, **kwargs)

    monkeypatch.setattr(upscaler_module, "save_png", stop_after_first)
    code, _, _ = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, "--overwrite", *ONE_THREAD)
    assert code == 130 and len(writes) == 1
    monkeypatch.undo()
    code, stdout, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 0, err
    assert "nothing to do" not in stdout and "3 images in" in err and "resuming: 1 of 4" in err
    x2 = pngs(out)
    assert all(x2[name] != x4[name] for name in x4), "every image is the x2 model's now"
    assert {e["identity"]["settings"]["output_scale"] for e in read_log(str(out)).values()} == {0}
    clean = tmp_path / "clean"
    run_cli(capsys, "upscale", photos, "-o", clean, "--model", compact, *ONE_THREAD)
    assert pngs(clean) == x2


HOLD = """
import sys, time
sys.path.insert(0, {tests!r})
from model_helpers import register_pack
register_pack()
from srt.cli.joblock import JobLock
JobLock({folder!r}).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_job_on_a_folder_is_refused_naming_the_first(compact, photos, tmp_path, capsys):
    """Another process holds the folder: refused at once (exit 2) naming it, nothing touched; once
    it is killed (kill -9: its lock file stays behind) the next job runs."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(tests=os.path.dirname(__file__), folder=str(out))],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
        assert code == 2 and "another job is writing to this output folder" in err, err
        assert f"process {holder.pid}" in err and "HOLD" not in err
        assert sorted(os.listdir(out)) == [LOCK_NAME]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(out / LOCK_NAME), "a dead job's lock file stays: a stale lock"
    code, _, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 0, err
    assert not os.path.exists(out / LOCK_NAME), "released at the end"


def test_the_lock_is_held_while_the_job_runs(compact, photos, tmp_path, capsys, monkeypatch):
    """Both orders in one process: while a job writes, a JobLock of its folder is refused."""
    out = tmp_path / "out"
    seen = []
    real = upscaler_module.save_png

    def try_lock(*args, **kwargs):
        try:
            JobLock(str(out)).acquire().release()
            seen.append("acquired")
        except Exception as e:  # the CliError naming this job
            seen.append(str(e))
        real(*args, **kwargs)

    monkeypatch.setattr(upscaler_module, "save_png", try_lock)
    assert run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)[0] == 0
    assert len(seen) == 4 and all(f"process {os.getpid()}" in s for s in seen), seen


def test_a_file_added_between_runs_renames_nothing_and_is_not_taken_for_done(
    compact, photos, tmp_path, capsys
):
    out = tmp_path / "out"
    assert run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)[0] == 0
    first = pngs(out)
    rgb(photos / "e.png", 16, 20, seed=9)  # another name: only it is new
    code, stdout, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 0 and "1 of 1 images written" in stdout and "4 were already there" in stdout, err
    assert {n: b for n, b in pngs(out).items() if n != "e.png"} == first
    rgb(photos / "b.png", 16, 20, seed=7)  # b.jpg's stem: that pair keeps its extensions
    code, stdout, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 0 and "2 of 2 images written" in stdout, (stdout, err)
    log = read_log(str(out))
    assert log["b.jpg.png"]["input"]["path"].endswith("b.jpg") and log["b.png.png"]["input"]["path"].endswith(
        "b.png"
    )
    assert pngs(out)["b.png"] == first["b.png"], "the old output is left as it was"


def test_an_input_changed_since_is_made_again(compact, photos, tmp_path, capsys):
    out = tmp_path / "out"
    run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    time.sleep(0.01)
    rgb(photos / "c.png", 16, 20, seed=42)
    code, stdout, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 0 and "1 of 1 images written" in stdout and "changed since" in err, (stdout, err)


def test_a_full_disk_fails_that_image_only(compact, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real = upscaler_module.save_png

    def full(target, *args, **kwargs):
        if target.endswith("c.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(target, *args, **kwargs)

    monkeypatch.setattr(upscaler_module, "save_png", full)
    code, stdout, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "c.png" in lines[0] and "No space left" in lines[0]
    assert sorted(pngs(out)) == ["a.png", "b.png", "d.png"]
    assert "c.png" not in read_log(str(out)) and not [n for n in os.listdir(out) if n.endswith(".part")]
    monkeypatch.undo()
    code, stdout, _ = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, *ONE_THREAD)
    assert code == 0 and "1 of 1 images written" in stdout


def test_ray_missing_fails_before_anything_is_written(compact, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, _, err = run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, "--ray")
    assert code == 2 and "Ray is not installed" in err and "pip install" in err
    assert not os.path.exists(out)


def test_the_job_log_names_what_made_each_output(compact, photos, tmp_path, capsys):
    out = tmp_path / "out"
    run_cli(capsys, "upscale", photos, "-o", out, "--model", compact, "--precision", "auto", *ONE_THREAD)
    log = read_log(str(out))
    assert sorted(log) == ["a.png", "b.png", "c.png", "d.png"] and (out / RECORD_NAME).exists()
    entry = log["b.png"]
    assert entry["made"]["dtype"] == "float32" and entry["made"]["device"] == "cpu"  # auto, resolved
    assert (
        entry["identity"]["settings"]["precision"] == "auto" and len(entry["identity"]["model_sha256"]) == 64
    )
    assert entry["input"]["path"] == str(photos / "b.jpg") and entry["png"]["size"] == os.path.getsize(
        out / "b.png"
    )
