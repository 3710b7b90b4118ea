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
