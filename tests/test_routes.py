"""GET /srt/model_info with hostile names (issue 18, section 4): ``../``, absolute paths, a 100 kB
name and markup each get a clear 4xx and read no file; only names the loader lists are read.

Runs the route's handler on the stub host (tests/comfy_stub.py). Its ``get_full_path`` joins the
name to the folder as given, so without the route's own check ``../outside/secret.pth`` really
loads a checkpoint from outside the model folders. tests/host/check_routes.py sends the same
requests to real ComfyUI servers.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import sys
import types

import comfy_stub
import pytest
import torch
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact

GOOD = "tiny.safetensors"


@pytest.fixture
def route(tmp_path, monkeypatch):
    """The handler on a stub host with one model; records every file the request reads."""
    models = tmp_path / "upscale_models"
    models.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")
    save_file(net.state_dict(), str(models / GOOD))
    save_file(net.state_dict(), str(outside / "secret.safetensors"))
    comfy_stub.install("0.33", str(tmp_path))
    web = types.SimpleNamespace(json_response=lambda body, status=200: (status, body))
    monkeypatch.setitem(sys.modules, "aiohttp", types.SimpleNamespace(web=web))
    monkeypatch.setitem(sys.modules, "aiohttp.web", web)
    try:
        paths = importlib.import_module("srt.nodes.paths")
        paths.register()
        load_model = importlib.import_module("srt.nodes.load_model")
        routes = importlib.import_module("srt.nodes.routes")
        read: list[str] = []
        real_loader, real_open = load_model.load_model, builtins.open

        def loader(path):
            read.append(str(path))
            return real_loader(path)

        def spy_open(file, *args, **kwargs):
            read.append(str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(load_model, "load_model", loader)

        def get(name: str | None):
            query = {} if name is None else {"name": name}
            request = types.SimpleNamespace(rel_url=types.SimpleNamespace(query=query))
            with monkeypatch.context() as m:
                m.setattr(builtins, "open", spy_open)
                return asyncio.run(routes.handle_model_info(request))

        yield types.SimpleNamespace(get=get, read=read, models=models, outside=outside)
    finally:
        comfy_stub.uninstall()


SECRET = "<outside>/secret.safetensors"  # an absolute path to a real checkpoint outside
HOSTILE = {
    "parent": "../../etc/passwd",
    "parent to a real checkpoint": "../outside/secret.safetensors",
    "parent inside a name": "sub/../../outside/secret.safetensors",
    "windows parent": "..\\outside\\secret.safetensors",
    "absolute": SECRET,
    "absolute etc": "/etc/passwd",
    "drive": "C:\\models\\x.pth",
    "unc": "\\\\server\\share\\x.pth",
    "100 kB": "a" * 100_000 + ".pth",
    "html": '<img src=x onerror="alert(1)">.pth',
    "script": "<script>alert(1)</script>",
    "nul": "tiny.safetensors\x00.png",
    "newline": "tiny\n.safetensors",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_names_get_400_and_read_nothing(route, case):
    value = HOSTILE[case].replace("<outside>", str(route.outside))
    status, body = route.get(value)
    assert status == 400, (case, status, body)
    assert body["ok"] is False and body["text"].startswith("Bad request: ")
    assert len(body["text"]) < 200 and "<" not in body["text"] and value not in body["text"]
    assert route.read == [], (case, route.read)


def test_missing_name_is_400(route):
    status, body = route.get(None)
    assert status == 400 and "no model name given" in body["text"] and route.read == []


def test_a_plain_name_not_installed_is_404(route):
    for name in ("nope.safetensors", "secret.safetensors", "upscale_models/tiny.safetensors"):
        status, body = route.get(name)
        assert status == 404 and body["ok"] is False, name
        assert body["text"].startswith(f"Cannot load {name}: no such checkpoint. Put a checkpoint")
    assert route.read == []


def test_a_listed_name_is_read_from_the_model_folder(route):
    status, body = route.get(GOOD)
    assert status == 200 and body["ok"] is True and "Compact" in body["text"]
    assert route.read and all(p.startswith(str(route.models)) for p in route.read), route.read
