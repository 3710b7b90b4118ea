"""A descriptor is shared with every node it is connected to, and some convert it in place.

KJNodes' "Upscale Image (using Model) Batched" with fp16/bf16 does ``model.to(device,
dtype=torch.float16)`` and afterwards only ``model.cpu()``: the shared weights stay rounded.
Super Resolution Model Loader then reads the file again instead of handing out the rounded model from its cache,
and Super Resolution Upscale (tiled) runs from exact float32 weights again (read from the file), or from
the rounded ones converted back when the file is unknown (core's loader), with a warning.
"""

from __future__ import annotations

import importlib
import logging
import pathlib
import shutil
import types

import comfy_stub
import pytest
import torch
from cli_helpers import compact_checkpoint

from srt.arch.loader import load_model

ATD = pathlib.Path(__file__).parent / "assets" / "ATD_light_x2_trained.safetensors"


@pytest.fixture(params=["0.3.64", "0.33", "newest"])
def host(request, tmp_path):
    """Stub host of one version; two copies of one model file give two separate descriptors."""
    models = tmp_path / "upscale_models"
    models.mkdir()
    shutil.copy(ATD, models / "atd.safetensors")
    shutil.copy(compact_checkpoint(tmp_path), models / "compact.safetensors")
    shutil.copy(models / "compact.safetensors", models / "compact_copy.safetensors")
    comfy_stub.install(request.param, str(tmp_path))
    try:
        yield types.SimpleNamespace(
            version=request.param,
            models=models,
            **{n: importlib.import_module(f"srt.nodes.{n}") for n in ("load_model", "upscale")},
        )
    finally:
        comfy_stub.uninstall()


def kj_batched_upscale(desc) -> None:
    """What the client does to the shared model (its upscaling itself changes nothing here)."""
    desc.model.to(torch.device("cpu"), dtype=torch.float16)
    desc.model.cpu()


def load(host, name: str):
    return host.load_model.LoadModelNode.execute(name).result[0]


def run(host, desc, precision: str) -> torch.Tensor:
    image = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    return host.upscale.UpscaleTiledNode.execute(desc, image, 0, 8, precision).result[0]


def _assert_file_weights(desc, path) -> None:
    expected = load_model(str(path)).model.state_dict()
    for key, value in desc.model.state_dict().items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key


def test_loader_reads_the_file_again_when_the_cached_model_was_rounded(host, caplog):
    desc = load(host, "atd.safetensors")
    kj_batched_upscale(desc)
    with caplog.at_level(logging.WARNING):
        again = load(host, "atd.safetensors")
    assert again is not desc
    _assert_file_weights(again, host.models / "atd.safetensors")
    assert (
        "atd.safetensors" in caplog.text
        and "float16" in caplog.text
        and "reading the file again" in caplog.text
    )
    assert load(host, "atd.safetensors") is again  # the fresh one is cached


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_upscale_node_runs_from_the_file_weights_after_a_client_rounded_them(host, caplog, precision):
    reference = run(host, load(host, "compact_copy.safetensors"), precision)  # the same file, never rounded
    desc = load(host, "compact.safetensors")
    kj_batched_upscale(desc)
    with caplog.at_level(logging.WARNING):
        out = run(host, desc, precision)
    assert torch.equal(out, reference)
    _assert_file_weights(desc, host.models / "compact.safetensors")  # restored in place, for every node
    assert "float16, not float32" in caplog.text and "read again from its file" in caplog.text


def test_half_copies_made_before_the_rounding_are_made_again(host):
    reference = run(host, load(host, "compact_copy.safetensors"), "bf16")
    desc = load(host, "compact.safetensors")
    assert torch.equal(run(host, desc, "bf16"), reference)  # the bf16 copy exists now
    kj_batched_upscale(desc)
    assert torch.equal(run(host, desc, "fp32"), run(host, load(host, "compact_copy.safetensors"), "fp32"))
    assert torch.equal(run(host, desc, "bf16"), reference)


def test_a_rounded_model_of_unknown_origin_is_converted_back(host, caplog):
    from spandrel import ModelLoader

    from srt.arch.loader import read_checkpoint

    state = read_checkpoint(str(host.models / "compact.safetensors")).state_dict
    core = ModelLoader().load_from_state_dict(state).eval()  # core's loader: no file we know of
    reference = run(host, core, "fp32")
    kj_batched_upscale(core)
    with caplog.at_level(logging.WARNING):
        out = run(host, core, "fp32")
    assert all(p.dtype == torch.float32 for p in core.model.parameters())
    if host.version == "newest":
        # the dynamic patcher's copies were rounded; unloading put the float32 originals back
        assert "put them back" in caplog.text and torch.equal(out, reference)
        return
    assert "converted back to float32" in caplog.text and "Free model and node cache" in caplog.text
    # the weights keep float16's rounding (relative 2^-11): the output moves by about that much
    assert 0 < (out - reference).abs().max().item() < 1e-2
