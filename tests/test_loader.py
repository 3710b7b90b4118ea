"""Checkpoint reading: formats, wrappers, prefixes, fallbacks and every promised error."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact

from srt.arch import load_model, load_state_dict, read_checkpoint
from srt.arch.errors import (
    CheckpointReadError,
    ConfigError,
    ModelLoadError,
    UnsafeCheckpointError,
    UnsupportedArchitectureError,
)


def compact_state_dict() -> dict[str, torch.Tensor]:
    """A tiny model that only spandrel knows: exercises the MAIN_REGISTRY fallback."""
    torch.manual_seed(0)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).state_dict()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"params": sd},
        lambda sd: {"params_ema": sd, "params": {k: torch.zeros_like(v) for k, v in sd.items()}},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"model": sd, "iteration": 3},
    ],
    ids=["bare", "params", "params_ema_first", "state_dict_module_prefix", "model_key"],
)
def test_pth_wrappers_are_unwrapped(tmp_path, wrap):
    sd = compact_state_dict()
    path = tmp_path / "m.pth"
    torch.save(wrap(sd), path)
    got = read_checkpoint(path).state_dict
    assert set(got) == set(sd)
    for k in sd:
        assert torch.equal(got[k], sd[k]), k


def test_safetensors_metadata_is_read(tmp_path):
    sd = compact_state_dict()
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path), metadata={"metadata": '{"upscale": 2, "img_range": 1.0}'})
    ckpt = read_checkpoint(path)
    assert ckpt.metadata["metadata"].startswith("{")
    assert set(ckpt.state_dict) == set(sd)


def test_spandrel_fallback_for_other_architectures(tmp_path):
    path = tmp_path / "compact.safetensors"
    save_file(compact_state_dict(), str(path))
    desc = load_model(path)
    assert desc.architecture.id == "Compact"
    assert desc.scale == 2
    out = desc(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 16, 16)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(CheckpointReadError, match=r"nothere\.pth: no such file"):
        read_checkpoint(tmp_path / "nothere.pth")


def test_unsupported_extension(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"abc")
    with pytest.raises(CheckpointReadError, match=r"model\.onnx: unsupported file type '\.onnx'"):
        read_checkpoint(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pth"
    p.write_bytes(b"")
    with pytest.raises(CheckpointReadError, match=r"empty\.pth: the file is empty"):
        read_checkpoint(p)


@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
def test_truncated_file_is_reported_as_corrupt(tmp_path, ext):
    sd = compact_state_dict()
    full = tmp_path / f"full{ext}"
    if ext == ".pth":
        torch.save(sd, full)
    else:
        save_file(sd, str(full))
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match=r"cut\.(pth|safetensors): .*(truncated|corrupt)"):
        read_checkpoint(cut)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_not_a_model(tmp_path, seed):
    p = tmp_path / "noise.pth"
    p.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
        .numpy()
        .tobytes()
    )
    with pytest.raises(CheckpointReadError, match=r"noise\.pth"):
        read_checkpoint(p)


def test_dict_without_tensors(tmp_path):
    p = tmp_path / "opts.pth"
    torch.save({"lr": 0.1, "epochs": 3}, p)
    with pytest.raises(CheckpointReadError, match=r"opts\.pth: contains no tensors"):
        read_checkpoint(p)


def test_unknown_architecture_names_closest_family_and_missing_keys():
    sd = {"conv_first.weight": torch.zeros(180, 3, 3, 3), "layers.0.blocks.0.gamma": torch.zeros(180)}
    with pytest.raises(UnsupportedArchitectureError) as info:
        load_state_dict(sd, source="mystery.safetensors")
    msg = str(info.value)
    assert msg.startswith("mystery.safetensors: not a super-resolution model")
    assert "closest of ours:" in msg and "missing keys:" in msg


def test_unsupported_setting_names_the_file(tmp_path, state_dict):
    """A recognised checkpoint trained with a setting we refuse and spandrel cannot build either
    (an ape table for no size it assumes): the message names the file."""
    sd = dict(state_dict("ATD_light_x2"))
    sd["absolute_pos_embed"] = torch.zeros(1, 100, 48)
    p = tmp_path / "4x_ape_model.safetensors"
    save_file(sd, str(p))
    with pytest.raises(ConfigError, match=r"^4x_ape_model\.safetensors: ATD checkpoint .*ape=True"):
        load_model(p)


def test_tensor_of_the_wrong_shape_names_the_file_and_the_key(tmp_path, state_dict):
    """Ours: detected, but one tensor does not fit the detected architecture."""
    sd = dict(state_dict("RGT_S_x2"))
    key = "layers.0.blocks.1.mlp.fc2.weight"
    sd[key] = torch.zeros(sd[key].shape[0], sd[key].shape[1] - 1)
    p = tmp_path / "edited.pth"
    torch.save({"params": sd}, p)
    with pytest.raises(ModelLoadError, match=r"^edited\.pth: recognised as RGT, but") as info:
        load_model(p)
    assert key in str(info.value) and "download it again" in str(info.value)


def test_spandrel_model_of_the_wrong_shape_names_the_file(tmp_path):
    """spandrel's fallback: a build failure is reported with the file name too."""
    sd = compact_state_dict()
    sd["body.2.weight"] = torch.zeros(8, 7, 3, 3)
    p = tmp_path / "compact_edited.safetensors"
    save_file(sd, str(p))
    with pytest.raises(ModelLoadError, match=r"^compact_edited\.safetensors: spandrel recognised"):
        load_model(p)


# --- pickles that need code: never executed ------------------------------------------------


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.LayerNorm(2)])
        self.register_buffer("kept", torch.arange(3.0))
        self.register_buffer("dropped", torch.zeros(1), persistent=False)


class _TrainingState:
    """Like nhs2828's ``State``: model, optimizer, scheduler, iteration, pickled whole."""

    def __init__(self, model: torch.nn.Module, payload=None) -> None:
        self.model = model
        self.optim = torch.optim.Adam(model.parameters())
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optim, 10)
        self.iteration = 7
        self.payload = payload


def test_pickle_with_payload_does_not_run_it(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pth"
    torch.save({"params": _Evil(str(marker))}, p)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth: .*system.*NOT imported or run"):
        read_checkpoint(p)
    assert not marker.exists()


def test_pickled_training_state_yields_model_weights_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    net = _TinyNet()
    p = tmp_path / "RGT.plt"
    torch.save(_TrainingState(net, payload=_Evil(str(marker))), p)
    got = read_checkpoint(p).state_dict
    expected = net.state_dict()
    assert set(got) == set(expected)  # persistent buffers kept, non-persistent ones not saved
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    assert not marker.exists()
