"""Fault injection on ``python -m cli upscale`` run as users run it (a real process, real signals):
a job stopped by SIGTERM/SIGHUP stops every worker and leaves no partial file; workers never
outlive their parent; a worker killed mid-image fails that image only.

Each test starts the command line in its own process group with two CPU workers on a folder of
images big enough to take a few seconds each with the shipped tiny model, and watches the
output folder to act at the right moment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import rgb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = 10
SIZE = 320  # px: each image takes a second or more on one thread


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults_in")
    for i in range(IMAGES):
        rgb(folder / f"im{i:02d}.png", SIZE, SIZE, seed=i)
    return folder


def start(photos, out, *extra) -> subprocess.Popen:
    argv = [sys.executable, "-m", "cli", "upscale", str(photos), "-o", str(out), "--scale", "2"]
    argv += ["--devices", "cpu,cpu", "--threads", "1", *extra]
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def pngs(out) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.endswith(".png")) if os.path.isdir(out) else []


def wait_for(predicate, timeout: float = 120.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in os.listdir(f"/proc/{parent}/task") if os.path.isdir(f"/proc/{parent}/task") else []:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                kids = []
            found += kids
            todo += kids
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _is_worker(pid: int) -> bool:
    """A spawned worker (not multiprocessing's resource tracker, also a child)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"spawn_main" in f.read()
    except OSError:
        return False


def workers_of(proc) -> list[int]:
    """The two worker processes."""
    wait_for(lambda: len([p for p in children(proc.pid) if _is_worker(p)]) >= 2, what="two workers")
    return [p for p in children(proc.pid) if _is_worker(p)]


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"]
)
def test_a_stop_signal_to_the_parent_stops_every_worker(photos, tmp_path, signum, code):
    out = tmp_path / "out"
    proc = start(photos, out)
    workers = workers_of(proc)
    wait_for(lambda: len(pngs(out)) >= 2, what="two images written")
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name}" in err, err
    wait_for(lambda: not any(alive(w) for w in workers), timeout=15, what="workers to end")
    written = pngs(out)
    time.sleep(2)
    assert pngs(out) == written, "nothing is written after the stop"
    assert len(written) < IMAGES
    assert not [n for n in os.listdir(out) if n.endswith(".part")]


def test_workers_end_when_their_parent_is_killed(photos, tmp_path):
    """kill -9 of the parent: the kernel tells the workers (PR_SET_PDEATHSIG); they stop writing."""
    out = tmp_path / "out"
    proc = start(photos, out)
    workers = workers_of(proc)
    wait_for(lambda: len(pngs(out)) >= 1, what="an image written")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_for(lambda: not any(alive(w) for w in workers), timeout=20, what="orphaned workers to end")
    written = pngs(out)
    time.sleep(2)
    assert pngs(out) == written and len(written) < IMAGES
    assert not [n for n in os.listdir(out) if n.endswith(".part")]


def test_a_worker_killed_mid_image_fails_that_image_only(photos, tmp_path):
    out = tmp_path / "out"
    proc = start(photos, out)
    workers = workers_of(proc)
    wait_for(lambda: len(pngs(out)) >= 1, what="an image written")
    os.kill(workers[0], signal.SIGKILL)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    died = [line for line in err.splitlines() if "died" in line]
    assert len(died) == 1 and "im" in died[0] and ".png" in died[0], err
    assert len(pngs(out)) == IMAGES - 1, (pngs(out), err)
    assert not [n for n in os.listdir(out) if n.endswith(".part")]
    assert f"{IMAGES - 1} of {IMAGES} images written" in stdout


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_a_stop_while_torch_loads_is_one_line(photos, tmp_path, signum, code):
    """Ctrl+C (or SIGTERM) in the seconds the command spends importing torch: one line, no traceback."""
    argv = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "cli",
        "upscale",
        str(photos),
        "-o",
        str(tmp_path / "out"),
    ]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # -X importtime writes a line per module imported: stop it once torch's own modules are loading
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "torch." in line:
            break
    os.kill(proc.pid, signum)
    _, rest = proc.communicate(timeout=60)
    err = [
        line for line in "".join(seen).splitlines() + rest.splitlines() if not line.startswith("import time:")
    ]
    assert proc.returncode == code, err
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in rest, err
    assert not os.path.exists(tmp_path / "out")
