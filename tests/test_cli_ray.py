"""``upscale --ray`` run as users run it (a real process against a Ray cluster): an image that kills
its actor is reported by name and the job ends; a stopped job ends like Ctrl+C; nothing is left in
the temporary folder; Ray's own log lines stay off the console.

One local cluster (``ray start --head --block`` in its own process group, two CPUs, its own
temporary folder, so no other Ray on this machine sees it or is seen) serves every test; the
command runs with ``--ray ADDRESS`` and the same ``TMPDIR``, so the driver's staging folder and
the actors' files land in the folder the tests watch. The cluster's workers inherit the test hook
``SRT_TEST_KILL_ON`` (cli/ray_run.py): an actor given ``kill-me.png`` ends its process at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from cli_helpers import compact_checkpoint, rgb

pytest.importorskip("ray")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILLER = "kill-me.png"
RUN_SECONDS = 240  # a job that hangs fails the test instead of stalling it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(("srt-ray-model-", "srt-ray-pack-")))


@pytest.fixture(scope="module")
def cluster():
    """``(address, env)`` of a local Ray cluster; ``env`` (its ``TMPDIR`` above all) for the
    command. The folder is short: Ray's socket paths live in it."""
    tmp = tempfile.mkdtemp(prefix="srtray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    env = {**os.environ, "TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "SRT_TEST_KILL_ON": KILLER}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    argv = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block"]
    argv += ["--port", str(port), "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"]
    argv += ["--dashboard-agent-listen-port", str(_free_port())]
    head = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(tmp, "ray", "ray_current_cluster")):
            assert head.poll() is None, "ray start failed"
            assert time.monotonic() < deadline, "ray start took too long"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", env
    finally:  # the cluster's own process group only: `ray stop` would stop every Ray here
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # whatever of the group is still there
        head.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return compact_checkpoint(tmp_path_factory.mktemp("models"))


def _photos(folder, names) -> str:
    folder.mkdir()
    for seed, name in enumerate(names):
        rgb(folder / name, 16, 20, seed=seed)
    return str(folder)


def _start(cluster, model, photos, out) -> subprocess.Popen:
    address, env = cluster
    argv = [sys.executable, "-m", "cli", "upscale", photos, "-o", str(out), "--model", model]
    argv += ["--ray", address, "--concurrency", "1", "--threads", "1"]
    return subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=RUN_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the job did not end in {RUN_SECONDS} s (hung)\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def test_an_image_that_kills_its_actor_is_reported_and_the_job_ends(cluster, model, tmp_path):
    """The actor's process dies on ``kill-me.png`` (each try): that image is one error line, the
    others are written, exit 1. Nothing but the command's own lines on the console, nothing left
    in the temporary folder."""
    photos = _photos(tmp_path / "in", ["a.png", KILLER, "c.png"])
    out = tmp_path / "out"
    code, stdout, err = _finish(_start(cluster, model, photos, out))
    assert code == 1, err
    assert err.splitlines() == [err.strip()], err  # one line on stderr: ours, no Ray line
    assert err.startswith("error: the Ray worker died while upscaling it") and KILLER in err, err
    assert sorted(n for n in os.listdir(out) if n.endswith(".png")) == ["a.png", "c.png"]
    lines = stdout.splitlines()
    assert len(lines) == 3 and all(" -> " in line for line in lines[:2]), stdout  # no "(raylet)" line
    assert lines[2].startswith("2 of 3 images written") and "1 failed" in lines[2], stdout
    assert _leftovers(cluster[1]["TMPDIR"]) == []


MOMENTS = {  # when to stop the job, and how long after: inside ray.init, or once an image is written
    # the pack is staged in milliseconds, ray.init takes seconds (Ray's SIGTERM handler is in place)
    "connecting": (lambda tmp, out: any(n.startswith("srt-ray-pack-") for n in os.listdir(tmp)), 0.5),
    "upscaling": (
        lambda tmp, out: os.path.isdir(out) and any(n.endswith(".png") for n in os.listdir(out)),
        0,
    ),
}


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_a_stopped_ray_job_ends_like_ctrl_c_and_leaves_no_temporary_folder(cluster, model, tmp_path, moment):
    """SIGTERM while the pack is staged and Ray connects, or while images are written: one line,
    exit 143 (Ray's own handler would exit 15), no staging folder or model copy left."""
    photos = _photos(tmp_path / "in", [f"p{i}.png" for i in range(6)])
    out = tmp_path / "out"
    tmp = cluster[1]["TMPDIR"]
    proc = _start(cluster, model, photos, out)
    deadline = time.monotonic() + RUN_SECONDS
    reached, delay = MOMENTS[moment]
    while not reached(tmp, out) and proc.poll() is None:
        assert time.monotonic() < deadline, f"never reached {moment}"
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    code, _, err = _finish(proc)
    assert code == 128 + signal.SIGTERM, err
    assert err.strip() == "error: stopped by SIGTERM", err
    assert _leftovers(tmp) == []
