"""Node logic without ComfyUI: a stub of the host functions the nodes use (``comfy_stub``), on the
behaviour of the supported hosts (0.3.64, 0.33 and the newest core's dynamic VRAM). The real hosts run ``tests/host/check_host.py``."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import types

import comfy_stub
import pytest
import torch
from project_files import pyproject
from safetensors.torch import save_file

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
ATD = "ATD_light_x2_trained.safetensors"


def _compact_file(path: str) -> str:
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")
    save_file(net.state_dict(), path)
    return path


@pytest.fixture(params=["0.3.64", "0.33", "newest"])
def host(request, tmp_path):
    """Stub host of one version, the pack's nodes imported against it, and two model files."""
    models = tmp_path / "upscale_models"
    models.mkdir()
    _compact_file(str(models / "compact.safetensors"))
    shutil.copy(os.path.join(ASSETS, ATD), models / ATD)
    mm = comfy_stub.install(request.param, str(tmp_path), intermediate=torch.float16)
    try:
        ns = types.SimpleNamespace(version=request.param, mm=mm, models=models)
        for name in ("host_compat", "load_model", "upscale", "residency", "paths"):
            setattr(ns, name, importlib.import_module(f"srt.nodes.{name}"))
        ns.paths.register()  # as the extension does when ComfyUI loads it
        yield ns
    finally:
        comfy_stub.uninstall()


def load(host, name: str):
    out = host.load_model.LoadModelNode.execute(name)
    return out.result[0], out.ui.args[0]


def upscale(host, desc, image, precision="fp32", tile=0, overlap=8):
    out = host.upscale.UpscaleTiledNode.execute(desc, image, tile, overlap, precision)
    return out.result[0]


def image(h=20, w=24, seed=0):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


def loaded_patchers(host):
    return [lm.model for lm in host.mm.current_loaded_models]


def test_load_sr_model_output_carries_a_patcher(host):
    desc, _ = load(host, "compact.safetensors")
    patcher = desc.patcher
    assert patcher.model is desc.model
    assert patcher.load_device == torch.device("cpu") and patcher.offload_device == torch.device("cpu")
    expected = "CoreModelPatcher" if host.version != "0.3.64" else "ModelPatcher"
    assert host.host_compat.patcher_class() is getattr(
        comfy_stub.sys.modules["comfy.model_patcher"], expected
    )


def test_load_sr_model_text_and_cache(host):
    desc, text = load(host, ATD)
    lines = text.splitlines()
    assert lines[0].startswith("ATD-light x2, 0.75 M params")  # the variant names the family
    assert "precisions: fp32, bf16, fp16" in lines
    assert "channels: 3 -> 3; input size: any" in lines
    assert lines[-1] == f"{ATD} (SR Transformers implementation)"
    again, _ = load(host, ATD)
    assert again is desc and again.patcher is desc.patcher  # read once, one patcher
    path = str(host.models / ATD)
    os.utime(path, ns=(1, 1))  # the file changed on disk: read it again
    assert load(host, ATD)[0] is not desc
    _, spandrel_text = load(host, "compact.safetensors")
    assert "(spandrel implementation)" in spandrel_text


def test_missing_model_names_both_places(host):
    with pytest.raises(FileNotFoundError) as e:
        load(host, "nope.safetensors")
    assert (
        "nope.safetensors" in str(e.value) and "upscale_models" in str(e.value) and "weights" in str(e.value)
    )


def test_corrupt_model_names_the_file(host):
    (host.models / "broken.safetensors").write_bytes(b"not a checkpoint")
    from srt.arch.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"broken\.safetensors"):
        load(host, "broken.safetensors")


def test_upscale_loads_through_model_management(host):
    from srt.engine.plan import plan
    from srt.engine.runner import Host, Settings
    from srt.engine.runner import upscale as engine_upscale

    desc, _ = load(host, ATD)
    img = image(16, 16)
    out = upscale(host, desc, img)
    expected_plan = plan(desc, img.shape, Settings(tile=0, overlap=8, precision="fp32"), torch.device("cpu"))
    loads = [c for c in host.mm.calls if c[0] == "load_models_gpu"]
    assert loads == [("load_models_gpu", [desc.patcher], expected_plan.memory_required, True)]
    assert loaded_patchers(host) == [desc.patcher]  # stays registered after the run
    assert out.shape == (1, 32, 32, 3)
    assert out.dtype == (torch.float16 if host.version != "0.3.64" else torch.float32)  # the IMAGE dtype
    local = engine_upscale(desc, img, Settings(tile=0, overlap=8, precision="fp32"), Host()).image
    torch.testing.assert_close(out.float(), local, atol=1e-3, rtol=0)  # float16 rounding only


def test_descriptors_from_core_loader_work(host):
    from spandrel import ModelLoader

    from srt.arch.loader import read_checkpoint

    sd = read_checkpoint(str(host.models / "compact.safetensors")).state_dict
    bare = ModelLoader().load_from_state_dict(sd).eval()  # 0.3.64's core loader: no patcher
    assert upscale(host, bare, image()).shape == (1, 40, 48, 3)
    assert loaded_patchers(host) == [bare.patcher] and bare.patcher.model is bare.model
    core = ModelLoader().load_from_state_dict(sd).eval()  # 0.33's core loader attaches one
    core.patcher = comfy_stub.ModelPatcher(core.model, torch.device("cpu"), torch.device("cpu"))
    own = core.patcher
    upscale(host, core, image())
    assert core.patcher is own and own in loaded_patchers(host)


def test_half_precision_keeps_one_copy_and_exact_fp32_weights(host):
    desc, _ = load(host, "compact.safetensors")
    before = {k: v.clone() for k, v in desc.model.state_dict().items()}
    fp32 = upscale(host, desc, image(), precision="fp32")
    half = upscale(host, desc, image(), precision="bf16")  # an explicit request runs even on the CPU
    ours = [p for p in loaded_patchers(host) if type(p.model) is type(desc.model)]
    assert len(ours) == 1 and ours[0] is not desc.patcher
    assert next(ours[0].model.parameters()).dtype == torch.bfloat16
    for k, v in desc.model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    assert 35 < 10 * torch.log10(1 / (half.float() - fp32.float()).pow(2).mean()).item() < 120
    again = upscale(host, desc, image(), precision="fp32")
    assert [p for p in loaded_patchers(host) if type(p.model) is type(desc.model)] == [desc.patcher]
    assert torch.equal(again, fp32)


def test_unloading_empties_the_caches_and_loses_nothing(host):
    desc, _ = load(host, "compact.safetensors")
    released = []
    desc.model.release_caches = lambda: released.append(1)
    first = upscale(host, desc, image())
    after_run = len(released)
    assert after_run >= 1  # caches go after every run
    host.mm.free_memory(1e30, torch.device("cpu"))  # a diffusion model asks for the room
    assert desc.patcher not in loaded_patchers(host) and len(released) > after_run
    assert torch.equal(upscale(host, desc, image()), first) and desc.patcher in loaded_patchers(host)


def test_interrupt_stops_the_run_and_the_next_one_works(host):
    desc, _ = load(host, "compact.safetensors")
    host.mm.interrupted = True
    with pytest.raises(InterruptedError):
        upscale(host, desc, image(32, 32), tile=16)
    assert upscale(host, desc, image(32, 32), tile=16).shape == (1, 64, 64, 3)


def test_the_plan_is_shown(host, caplog):
    desc, _ = load(host, "compact.safetensors")
    with caplog.at_level(logging.INFO):
        upscale(host, desc, image(40, 40), tile=16)
    text = caplog.text
    assert "plan: fp32, tile 16x16, overlap 8, 16 tile(s), output 80x80" in text
    assert "1 frame(s) -> 80x80 in float32, tiles 16x16 overlap 8: 16 tiles" in text


def test_pyproject_declares_the_oldest_supported_host(host):
    declared = pyproject()["tool"]["comfy"]["requires-comfyui"]
    assert declared == host.host_compat.REQUIRES_COMFYUI == ">=0.3.64"


def test_model_info_describes_a_file_without_a_run(host):
    ok, text = host.load_model.model_info(ATD)
    _, run_text = load(host, ATD)
    assert ok and text == run_text  # the box shows before a run what the run shows
    ok, text = host.load_model.model_info("nope.safetensors")
    assert not ok and text.startswith("Cannot load nope.safetensors: model 'nope.safetensors' not found")
    (host.models / "broken.safetensors").write_bytes(b"not a checkpoint")
    ok, text = host.load_model.model_info("broken.safetensors")
    assert not ok and "broken.safetensors" in text.split(":", 1)[1]


def test_model_info_route(host, monkeypatch):
    """GET /srt/model_info is registered once on ComfyUI's server and answers from model_info."""
    import asyncio
    import sys

    registered = []

    class Routes:
        def get(self, path):
            return lambda handler: registered.append((path, handler)) or handler

    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=Routes()))
    web = types.SimpleNamespace(json_response=lambda body, status=200: (status, body))
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.setitem(sys.modules, "aiohttp", types.SimpleNamespace(web=web))
    monkeypatch.setitem(sys.modules, "aiohttp.web", web)
    routes = importlib.import_module("srt.nodes.routes")
    routes.register()
    routes.register()
    assert [path for path, _ in registered] == ["/srt/model_info"]

    def get(query):
        request = types.SimpleNamespace(rel_url=types.SimpleNamespace(query=query))
        return asyncio.run(registered[0][1](request))

    status, body = get({"name": ATD})
    assert status == 200 and body == {"ok": True, "text": load(host, ATD)[1]}
    status, body = get({"name": "nope.safetensors"})
    assert status == 404 and not body["ok"] and "nope.safetensors" in body["text"]  # tests/test_routes.py
    assert get({})[0] == 400


def test_display_names_carry_the_search_words(host):
    """The front end ranks a match at the start of a display name first (0.33's search), and
    0.3.64's search reads only the node id and display name: loader and upscaler start with
    "Super Resolution" (ahead of core's video super-resolution nodes), Compare carries PSNR/SSIM
    and is not just "Compare" (core's string compare has that name). The families are in the
    loader's description everywhere and in the aliases where the host has them, with the nodes'
    earlier names (README, Nodes)."""
    compare = importlib.import_module("srt.nodes.compare")
    schemas = {
        cls.__name__: cls.define_schema().kwargs
        for cls in (host.load_model.LoadModelNode, host.upscale.UpscaleTiledNode, compare.CompareNode)
    }
    names = {k: v["display_name"] for k, v in schemas.items()}
    assert names["LoadModelNode"].startswith("Super Resolution") and "Loader" in names["LoadModelNode"]
    assert names["UpscaleTiledNode"].startswith("Super Resolution") and "Upscale" in names["UpscaleTiledNode"]
    families = ("RGT", "DRCT", "ATD", "HAT", "DAT", "SwinIR")
    assert all(word in schemas["LoadModelNode"]["description"] for word in families)
    assert all(word in names["CompareNode"] for word in ("Compare", "PSNR", "SSIM"))
    assert names["CompareNode"] != "Compare"
    has_aliases = host.version != "0.3.64"
    assert all(("search_aliases" in v) == has_aliases for v in schemas.values())
    if has_aliases:
        aliases = schemas["LoadModelNode"]["search_aliases"]
        assert all(word in aliases for word in families) and "load sr model" in aliases
        assert "upscale image (tiled)" in schemas["UpscaleTiledNode"]["search_aliases"]
