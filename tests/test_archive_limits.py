"""Zip checkpoints unpack within a byte budget (arch/archive.py): a zip bomb is refused, naming
the file, before it fills the memory -- through torch.load (and so GET /srt/model_info) and
through the restricted unpickler for training states (issue 18, section 4).

The bombs are small: members of deflated zeros that inflate ~1000x. Every test counts the bytes
``zipfile`` really inflates, so "refused" also means "not unpacked first".
"""

from __future__ import annotations

import zipfile

import pytest
import torch
from torch import nn

from srt.arch import archive
from srt.arch.errors import CheckpointReadError
from srt.arch.loader import read_checkpoint
from srt.arch.safe_unpickle import restricted_load

BOMB = 8 << 20  # bytes a bomb member inflates to (~8 kB deflated)


class TrainingState:
    """A whole pickled training state: ``weights_only`` refuses it, the restricted unpickler reads it."""

    def __init__(self, blob: bytes = b"") -> None:
        self.model = nn.Linear(4, 3)
        self.blob = blob  # pickled inline in data.pkl


@pytest.fixture
def inflated(monkeypatch):
    """Bytes ``zipfile`` inflates (every member read goes through ZipExtFile.read); a test sets
    ``bytes`` to 0 once its files are written."""
    counter = {"bytes": 0}
    read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = read(self, n)
        counter["bytes"] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    return counter


def _rezip(src, dst, replace: dict[str, bytes] | None = None) -> None:
    """Copy the torch archive ``src`` to ``dst`` with every member deflated (some replaced)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            name = info.filename
            zout.writestr(name, next((v for k, v in replace.items() if name.endswith(k)), zin.read(name)))


def _storage_bomb(tmp_path, obj, name: str):
    """``obj`` saved by torch, its first storage replaced by BOMB bytes of deflated zeros."""
    plain = tmp_path / "plain.pth"
    torch.save(obj, plain)
    path = tmp_path / name
    _rezip(plain, path, {"/data/0": bytes(BOMB)})
    assert path.stat().st_size < 64 << 10
    return path


def test_state_dict_bomb_is_refused_before_torch_load(tmp_path, inflated):
    path = _storage_bomb(tmp_path, nn.Linear(4, 3).state_dict(), "bomb.pth")
    inflated["bytes"] = 0
    with pytest.raises(CheckpointReadError, match=r"bomb\.pth: archive member 'plain/data/0' .*zip bomb"):
        read_checkpoint(path)
    assert inflated["bytes"] == 0  # refused from the declared sizes: nothing was inflated


def test_training_state_bomb_is_refused_by_the_restricted_unpickler(tmp_path, inflated):
    path = _storage_bomb(tmp_path, TrainingState(), "state_bomb.pth")
    inflated["bytes"] = 0
    with pytest.raises(CheckpointReadError, match=r"state_bomb\.pth: archive member 'plain/data/0'"):
        restricted_load(str(path))
    assert inflated["bytes"] == 0


@pytest.mark.parametrize("member", ["storage", "data.pkl"])
def test_undeclared_inflation_stops_at_the_budget(tmp_path, monkeypatch, inflated, member):
    """Second line of defence, for sizes the archive does not declare truthfully: the bytes really
    inflated are counted in chunks and reading stops at the budget (a storage or the pickle)."""
    if member == "storage":
        path = _storage_bomb(tmp_path, TrainingState(), "state.pth")
    else:  # a 8 MiB bytes object inside data.pkl itself
        plain = tmp_path / "plain.pth"
        torch.save(TrainingState(blob=bytes(BOMB)), plain)
        path = tmp_path / "state.pth"
        _rezip(plain, path)
    limit, chunk = 1 << 20, 64 << 10
    monkeypatch.setattr(archive, "CHUNK", chunk)
    monkeypatch.setattr(archive.InflateBudget, "check_declared", lambda self, zf: None)
    inflated["bytes"] = 0
    with pytest.raises(CheckpointReadError, match=r"state\.pth: archive member .* at least 1\.0 MiB"):
        restricted_load(str(path), max_inflated=limit)
    assert limit < inflated["bytes"] <= limit + chunk


def test_real_checkpoints_fit_their_budget(tmp_path, inflated):
    """Stored (as torch.save writes) or deflated, real files load; each storage is read once."""
    net = nn.Linear(4, 3)
    stored = tmp_path / "stored.pth"
    torch.save(TrainingState(), stored)
    deflated = tmp_path / "deflated.pth"
    _rezip(stored, deflated)
    for path in (stored, deflated):
        sd = read_checkpoint(path).state_dict
        assert set(sd) == {"weight", "bias"} and sd["weight"].shape == net.weight.shape
    sd_file = tmp_path / "sd.pth"
    torch.save(net.state_dict(), sd_file)
    assert torch.equal(read_checkpoint(sd_file).state_dict["weight"], net.weight)


def test_a_shared_storage_is_inflated_once(tmp_path, inflated):
    """Views of one storage used to re-read (and re-inflate) it per tensor: a bomb multiplier."""
    state = TrainingState()
    base = torch.zeros(64 << 10)  # 256 kB storage
    state.model.register_buffer("a", base[:10])
    state.model.register_buffer("b", base[10:20])
    path = tmp_path / "views.pth"
    torch.save(state, path)
    inflated["bytes"] = 0
    sd = restricted_load(str(path))
    assert set(sd) == {"weight", "bias", "a", "b"}
    with zipfile.ZipFile(path) as zf:
        member = max(zf.infolist(), key=lambda i: i.file_size)
        pkl = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    assert member.file_size == 256 << 10
    assert inflated["bytes"] < member.file_size + pkl.file_size + (16 << 10)


# ---- tensors that claim more elements than their storage holds (issue 26, item 7) ------------------

HUGE = 200_000_000  # elements: 800 MB of float32 if a loader materialised the view


class StridedState:
    """A pickled training state whose model holds a stride-0 view of one float claiming HUGE."""

    def __init__(self, view: torch.Tensor) -> None:
        self.model = nn.Module()
        self.model.register_buffer("weight", view)


def _strided_files(tmp_path) -> dict[str, object]:
    zero = torch.zeros(1).expand(HUGE)  # stride 0: one stored float
    overlap = torch.zeros(16).as_strided((HUGE // 4, 4), (0, 1))  # every row the same 4 floats
    files = {}
    for name, obj in [
        ("stride0_state.pth", StridedState(zero)),
        ("overlap_state.pth", StridedState(overlap)),
        ("stride0_dict.pth", {"params": {"conv_first.weight": zero}}),
        ("overlap_dict.pth", {"conv_first.weight": overlap}),
    ]:
        torch.save(obj, tmp_path / name)
        assert (tmp_path / name).stat().st_size < 4096, "a few hundred bytes on disk"
        files[name] = tmp_path / name
    return files


PEAK_RSS = """
import resource, sys
sys.path.insert(0, {tests!r})
from model_helpers import register_pack
register_pack()
from srt.arch.errors import CheckpointReadError
from srt.arch.loader import read_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_checkpoint({path!r})
    print("LOADED")
except CheckpointReadError as e:
    print("REFUSED", e)
print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_views_claiming_more_than_their_storage_are_refused_without_allocating(tmp_path):
    """Through torch.load (a state dict) and the restricted unpickler (a training state): refused,
    naming the file, and the process's peak memory grows by less than 64 MiB (800 MB claimed)."""
    import os
    import subprocess
    import sys

    tests = os.path.dirname(os.path.abspath(__file__))
    for name, path in _strided_files(tmp_path).items():
        out = subprocess.run(
            [sys.executable, "-c", PEAK_RSS.format(tests=tests, path=str(path))],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        assert "REFUSED" in out and name in out and "zero or overlapping strides" in out, out
        growth_kb = int(out.split("GROWTH_KB")[1])
        assert growth_kb < 64 << 10, f"{name}: peak RSS grew {growth_kb} kB"


def test_shared_and_sliced_storages_still_load(tmp_path):
    """Views that stay within their storage (tied weights, slices of one buffer) are real checkpoints."""
    base = torch.arange(24, dtype=torch.float32)
    sd = {"a": base[:12].view(3, 4), "b": base[12:].view(4, 3), "c": base.view(2, 12).t()}
    torch.save(sd, tmp_path / "views.pth")
    loaded = read_checkpoint(tmp_path / "views.pth").state_dict
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    state = StridedState(base.view(4, 6)[:, 1:5])  # a strided slice, through the restricted unpickler
    torch.save(state, tmp_path / "slice_state.pth")
    assert torch.equal(
        read_checkpoint(tmp_path / "slice_state.pth").state_dict["weight"], base.view(4, 6)[:, 1:5]
    )


def test_elements_held():
    assert archive.elements_held(10, 0, (10,), (1,)) == 10
    assert archive.elements_held(10, 2, (8,), (1,)) == 8
    assert archive.elements_held(12, 0, (4, 3), (3, 1)) == 12
    assert archive.elements_held(1, 0, (5,), (0,)) == 1  # stride 0: 5 claimed, 1 held
    assert archive.elements_held(10, 5, (6,), (1,)) == 0  # reaches past the storage
    assert archive.elements_held(10, 0, (0, 3), (3, 1)) == 10
