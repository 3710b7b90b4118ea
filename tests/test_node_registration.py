"""What the pack registers with ComfyUI when it loads (on the stub of both hosts): the ``weights/``
folder once and after the user's own default, search aliases where the host has them, and what
Super Resolution Model Loader says when no checkpoint is installed."""

from __future__ import annotations

import asyncio
import importlib
import os

import comfy_stub
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
SECTION = "Where to get checkpoints"


FAMILIES = ("RGT", "DRCT", "ATD", "HAT", "DAT", "SwinIR")  # every family we implement

def _load_pack(version: str, tmp_path, extra_paths=None, weights_dir=None):
    """Install the stub host, import the nodes, load the extension as ComfyUI does."""
    (tmp_path / "upscale_models").mkdir(exist_ok=True)
    comfy_stub.install(version, str(tmp_path), extra_paths=extra_paths)
    nodes = importlib.import_module("srt.nodes")
    if weights_dir is not None:
        nodes.paths.WEIGHTS_DIR = str(weights_dir)
    node_list = asyncio.run(nodes.SRTransformersExtension().get_node_list())
    return nodes, node_list


@pytest.fixture(params=["0.3.64", "0.33"])
def version(request):
    yield request.param
    comfy_stub.uninstall()


def test_weights_registered_once_at_load(version, tmp_path):
    nodes, _ = _load_pack(version, tmp_path)
    folder_paths = comfy_stub.sys.modules["folder_paths"]
    assert folder_paths.get_folder_paths("srt_weights") == [nodes.paths.WEIGHTS_DIR]
    nodes.paths.model_names()
    nodes.LoadModelNode.define_schema()
    asyncio.run(nodes.SRTransformersExtension().get_node_list())  # a second load changes nothing
    assert folder_paths.get_folder_paths("srt_weights") == [nodes.paths.WEIGHTS_DIR]
    assert ".safetensors" in folder_paths.folder_names_and_paths["srt_weights"][1]


@pytest.mark.parametrize("is_default", [True, False])
def test_user_folder_from_extra_model_paths_stays_first(version, tmp_path, is_default):
    mine = str(tmp_path / "my_sr_models")
    nodes, _ = _load_pack(version, tmp_path, extra_paths={"srt_weights": [(mine, is_default)]})
    folder_paths = comfy_stub.sys.modules["folder_paths"]
    assert folder_paths.get_folder_paths("srt_weights") == [mine, nodes.paths.WEIGHTS_DIR]


def test_search_aliases_where_the_host_has_them(version, tmp_path):
    _, node_list = _load_pack(version, tmp_path)
    wanted = {
        "SRT_LoadModel": {"upscale", "super resolution", *FAMILIES},
        "SRT_UpscaleTiled": {"upscale", "super resolution", *FAMILIES},
        "SRT_Compare": {"compare", "PSNR", "SSIM"},
    }
    for node in node_list:
        schema = node.define_schema().kwargs
        aliases = schema.get("search_aliases")
        if version == "0.3.64":  # its Schema has no such field (the stub raises as the dataclass does)
            assert aliases is None
            continue
        text = " ".join(aliases).lower()
        missing = [w for w in wanted[schema["node_id"]] if w.lower() not in text]
        assert not missing, (schema["node_id"], missing)


def test_no_checkpoint_installed_says_where_to_put_one(version, tmp_path):
    empty = tmp_path / "weights"
    empty.mkdir()
    nodes, _ = _load_pack(version, tmp_path, weights_dir=empty)
    node = nodes.LoadModelNode
    combo = node.define_schema().kwargs["inputs"][0]
    assert combo.kwargs["options"] == []
    tooltip = combo.kwargs["tooltip"]
    assert tooltip.startswith("No checkpoint installed") and README in tooltip and SECTION in tooltip
    assert str(empty) in tooltip and "upscale_models" in tooltip

    message = node.validate_inputs(model_name="SRT_ATD-tiny_x4.safetensors")
    assert "no checkpoint installed" in message and README in message and SECTION in message
    with pytest.raises(FileNotFoundError, match="no checkpoint installed") as e:
        node.execute("SRT_ATD-tiny_x4.safetensors")
    assert README in str(e.value) and SECTION in str(e.value)


def test_messages_point_at_the_readme_shipped_in_the_pack(version, tmp_path):
    """The README file beside the installed nodes (no web address that may not exist), and the
    section the message names is in it."""
    nodes, _ = _load_pack(version, tmp_path)
    assert nodes.paths.README == README and os.path.isfile(README)
    assert "://" not in nodes.paths.where_to_put()
    with open(README, encoding="utf-8") as fh:
        assert f"\n## {SECTION}\n" in fh.read()
