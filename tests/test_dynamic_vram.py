"""Our UPSCALE_MODEL on the newest ComfyUI core: dynamic VRAM (``ModelPatcherDynamic``).

The shim (``tests/comfy_stub.py``, version ``"newest"``) rebuilds what the newest core sources we
could read do to a spandrel-style model: Comfy-Org/ComfyUI ``comfy/model_patcher.py`` @
08d0e510f4e5, ``comfy/model_management.py`` @ a7631e351dc2. ``core_upscale`` below rebuilds the
order of calls of core's "Upscale Image (using Model)" at ``comfy_extras/nodes_upscale_model.py`` @
30a74432c780. Both ways the dynamic patcher may treat a module not built from comfy ops are run:
weights replaced by copies on the device (what the patcher source does), and weights left on the
offload device (what the node's comment says happens, hence its ``upscale_model.to(device)``).

The stand-in GPU is the ``meta`` device where a test checks placement (a device of its own: a
weight on the CPU is visibly not on it), and the CPU where a test compares images.
"""

from __future__ import annotations

import importlib
import os
import shutil
import types

import comfy_stub
import pytest
import torch

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
ATD = "ATD_light_x2_trained.safetensors"
META = torch.device("meta")
CPU = torch.device("cpu")


@pytest.fixture(params=[False, True], ids=["moves-weights", "leaves-weights"])
def newest(request, tmp_path, monkeypatch):
    """The newest core on a CPU stand-in GPU; ``.on(device)`` reinstalls it on another device."""
    models = tmp_path / "upscale_models"
    models.mkdir()
    shutil.copy(os.path.join(ASSETS, ATD), models / ATD)
    monkeypatch.setattr(comfy_stub.DynamicPatcher, "leaves_weights", request.param)

    def on(device):
        comfy_stub.uninstall()
        ns = types.SimpleNamespace(mm=comfy_stub.install("newest", str(tmp_path), device=device), on=on)
        for name in ("host_compat", "load_model", "upscale", "residency", "paths"):
            setattr(ns, name, importlib.import_module(f"srt.nodes.{name}"))
        ns.paths.register()
        return ns

    try:
        yield on(CPU)
    finally:
        comfy_stub.uninstall()


def weights(module):
    return dict(list(module.named_parameters()) + list(module.named_buffers()))


def devices(module) -> set[torch.device]:
    return {t.device for t in weights(module).values()}


def image(h=16, w=16, seed=0):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


def core_upscale(host, upscale_model, image):
    """Core's "Upscale Image (using Model)" of the newest sources (one tile: the image fits in 512)."""
    mm = host.mm
    device = upscale_model.patcher.load_device
    memory_required = (512 * 512 * 3) * image.element_size() * max(upscale_model.scale, 1.0) * 384.0
    memory_required += image.nelement() * image.element_size()
    mm.load_models_gpu([upscale_model.patcher], memory_required=memory_required, force_full_load=True)
    in_img = image.movedim(-1, -3).to(device)
    upscale_model.to(device)  # "materialize them on the compute device explicitly"
    assert max(in_img.shape[-2:]) <= 512
    s = upscale_model(in_img.float()).to(mm.intermediate_device())
    return torch.clamp(s.movedim(-3, -1), min=0, max=1.0).to(mm.intermediate_dtype())


def our_upscale(host, desc, img, precision="fp32"):
    return host.upscale.UpscaleTiledNode.execute(desc, img, 0, 8, precision).result[0]


def test_the_newest_core_patcher_is_the_dynamic_one(newest):
    desc = newest.load_model.LoadModelNode.execute(ATD).result[0]
    assert type(desc.patcher) is comfy_stub.DynamicPatcher and newest.host_compat.is_dynamic(desc.patcher)


def test_our_load_puts_every_weight_on_the_device_and_eviction_takes_it_back(newest):
    host = newest.on(META)
    desc = host.load_model.LoadModelNode.execute(ATD).result[0]
    originals = {k: v.clone() for k, v in weights(desc.model).items()}
    placement = host.residency.ComfyPlacement(desc, memory_required=1 << 20)
    module = placement.module(torch.float32)
    assert module is desc.model and devices(module) == {META}
    assert host.host_compat.is_loaded(desc.patcher)
    placement.done()
    host.mm.free_memory(1e30, META)  # another model needs the room
    assert not host.host_compat.is_loaded(desc.patcher)
    # what the patcher or we replaced is back: the original tensors, on the CPU, unchanged
    # (a parameter the patcher moves in place, of a module with parameterised children, stays on
    # the device with the real patcher too)
    back = weights(desc.model)
    moved_in_place = {k for k, v in back.items() if v.device == META}
    assert all(torch.equal(back[k], originals[k]) for k in back.keys() - moved_in_place)
    if comfy_stub.DynamicPatcher.leaves_weights:
        assert not moved_in_place  # all of it was ours to place, all of it came back
    assert len(moved_in_place) < len(back) / 4
    # loaded again: everything on the device again
    assert devices(placement.module(torch.float32)) == {META}


def test_half_copies_are_placed_and_estimated_in_their_dtype(newest):
    host = newest.on(META)
    desc = host.load_model.LoadModelNode.execute(ATD).result[0]
    module = host.residency.ComfyPlacement(desc, 1 << 20).module(torch.bfloat16)
    assert module is not desc.model and devices(module) == {META}
    assert {t.dtype for t in weights(module).values() if t.is_floating_point()} == {torch.bfloat16}
    half = host.residency.patcher_for(desc, torch.bfloat16)
    assert host.mm.current_loaded_models[0].model is half and not host.host_compat.is_loaded(desc.patcher)
    fp32_bytes = sum(t.nbytes for t in weights(desc.model).values() if t.is_floating_point())
    half_bytes = sum(t.nbytes for t in weights(module).values() if t.is_floating_point())
    assert half_bytes * 2 == fp32_bytes  # what the estimate counts for the half run


def test_core_node_then_ours_on_the_device(newest):
    """Core's node loads and moves the descriptor; ours then finds it all on the device."""
    host = newest.on(META)
    desc = host.load_model.LoadModelNode.execute(ATD).result[0]
    host.mm.load_models_gpu([desc.patcher], memory_required=1, force_full_load=True)
    desc.to(META)  # the core node's explicit move (running on meta is not the point here)
    assert devices(desc.model) == {META}
    module = host.residency.ComfyPlacement(desc, 1 << 20).module(torch.float32)
    assert module is desc.model and devices(module) == {META}


def test_core_node_and_ours_give_the_same_image(newest):
    """The same descriptor through the rebuilt core node and ours, alternately, on the dynamic
    patcher (weights replaced under the model between runs): one tile, the same model call."""
    desc = newest.load_model.LoadModelNode.execute(ATD).result[0]
    img = image()
    with torch.no_grad():
        expected = desc.model(img.movedim(-1, -3)).clamp(0, 1).movedim(-3, -1)
    core = core_upscale(newest, desc, img)
    ours = our_upscale(newest, desc, img)
    torch.testing.assert_close(core, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    newest.mm.free_memory(1e30, CPU)
    assert torch.equal(our_upscale(newest, desc, img), ours)
    assert torch.equal(core_upscale(newest, desc, img), core)
    assert desc.patcher.loads >= 4  # every load_models_gpu loaded it again, as the newest core does


def test_a_rounded_descriptor_runs_in_float32_again(newest):
    """Another node's dtype move (``desc.to(float16)``) is undone before our fp32 run."""
    desc = newest.load_model.LoadModelNode.execute(ATD).result[0]
    img = image()
    first = our_upscale(newest, desc, img)
    desc.to(torch.float16)
    assert torch.equal(our_upscale(newest, desc, img), first)
    assert {t.dtype for t in weights(desc.model).values() if t.is_floating_point()} == {torch.float32}
