"""``example_workflows/`` without ComfyUI: each file is a front-end (UI format) workflow whose node
types exist in a fresh install, whose widget values fit our nodes' schemas, whose links are
consistent, and which has a ``.jpg`` thumbnail. Loading and queueing them in the real front end
of both hosts: ``tests/host/check_examples.py``."""

from __future__ import annotations

import importlib
import json
import os

import comfy_stub
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "example_workflows")
WORKFLOWS = ("upscale_x4", "compare_with_bicubic", "hires_fix", "upscale_frames")
RUN_ON_FRESH_INSTALL = ("upscale_x4", "compare_with_bicubic", "upscale_frames")  # nothing to download
X2, X4 = "SRT_ATD-tiny_x2.safetensors", "SRT_ATD-tiny_x4.safetensors"  # shipped in weights/
FRESH_INPUT = "example.png"  # ComfyUI ships input/example.png

# core nodes used, with their widgets in the front end's order (the same in ComfyUI 0.3.64 and 0.33)
CORE_NODES = {
    "LoadImage": ["image", "upload"],
    "SaveImage": ["filename_prefix"],
    "PreviewImage": [],
    "ImageScaleBy": ["upscale_method", "scale_by"],
    "RepeatImageBatch": ["amount"],
    "CheckpointLoaderSimple": ["ckpt_name"],
    "CLIPTextEncode": ["text"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "KSampler": ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "VAEDecode": [],
    "VAEEncode": [],
}
FRONT_END_NODES = {"Note": ["text"], "MarkdownNote": ["text"]}  # never sent to the server
NEEDS_DOWNLOAD = {"CheckpointLoaderSimple"}  # a diffusion checkpoint: only in hires_fix
CORE_COMBOS = {
    ("ImageScaleBy", "upscale_method"): {"nearest-exact", "bilinear", "area", "bicubic", "lanczos"}
}
WIDGET_TYPES = {"Int", "Float", "Combo", "Boolean", "String"}


def _load(name: str) -> dict:
    with open(os.path.join(EXAMPLES, f"{name}.json"), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def our_schemas(tmp_path_factory):
    """node id -> [(widget name, input record)] of our nodes, in the front end's widget order."""
    tmp = tmp_path_factory.mktemp("host")
    (tmp / "upscale_models").mkdir()
    comfy_stub.install("0.33", str(tmp))
    try:
        nodes = importlib.import_module("srt.nodes")
        schemas = {}
        for cls in (nodes.LoadModelNode, nodes.UpscaleTiledNode, nodes.CompareNode):
            schema = cls.define_schema().kwargs
            inputs = schema["inputs"]
            ordered = [i for i in inputs if not i.kwargs.get("optional")] + [
                i for i in inputs if i.kwargs.get("optional")
            ]
            schemas[schema["node_id"]] = {
                "widgets": [(i.args[0], i) for i in ordered if i.io_type in WIDGET_TYPES],
                "inputs": {i.args[0] for i in inputs},
            }
        yield schemas
    finally:
        comfy_stub.uninstall()


def test_every_workflow_has_a_thumbnail_and_nothing_else_is_there():
    files = sorted(os.listdir(EXAMPLES))
    assert files == sorted(f"{n}.{ext}" for n in WORKFLOWS for ext in ("json", "jpg"))
    for name in WORKFLOWS:
        with open(os.path.join(EXAMPLES, f"{name}.jpg"), "rb") as fh:
            data = fh.read()
        assert data[:3] == b"\xff\xd8\xff" and len(data) > 5_000, f"{name}.jpg is not a JPEG thumbnail"


@pytest.mark.parametrize("name", WORKFLOWS)
def test_ui_format_and_links(name):
    wf = _load(name)
    assert wf["version"] == 0.4 and isinstance(wf["nodes"], list) and isinstance(wf["links"], list)
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]) and wf["last_node_id"] >= max(nodes)
    links = {link[0]: link for link in wf["links"]}
    assert len(links) == len(wf["links"]) and wf["last_link_id"] >= max(links, default=0)
    for link_id, origin, out_slot, target, in_slot, type_ in wf["links"]:
        out = nodes[origin]["outputs"][out_slot]
        inp = nodes[target]["inputs"][in_slot]
        assert link_id in (out.get("links") or []), f"{name}: link {link_id} missing on its origin"
        assert inp["link"] == link_id, f"{name}: link {link_id} missing on its target"
        assert type_ == out["type"] and inp["type"] in (type_, "*"), f"{name}: link {link_id} type"
    for n in wf["nodes"]:  # every reference points to a link
        for inp in n.get("inputs", []):
            assert inp.get("link") is None or inp["link"] in links, (name, n["type"], inp["name"])
        for out in n.get("outputs", []):
            assert all(i in links for i in out.get("links") or []), (name, n["type"], out["name"])


@pytest.mark.parametrize("name", WORKFLOWS)
def test_node_types_and_widgets(name, our_schemas):
    for n in _load(name)["nodes"]:
        kind, values = n["type"], n.get("widgets_values") or []
        if kind in our_schemas:
            schema = our_schemas[kind]
            assert {i["name"] for i in n.get("inputs", [])} <= schema["inputs"], (name, kind)
            widgets = schema["widgets"]
            assert len(values) == len(widgets), (name, kind, values)
            for (input_name, spec), value in zip(widgets, values, strict=True):
                _check_widget(name, kind, input_name, spec, value)
        elif kind in CORE_NODES or kind in FRONT_END_NODES:
            expected = {**CORE_NODES, **FRONT_END_NODES}[kind]
            assert len(values) == len(expected), (name, kind, values)
            for widget, value in zip(expected, values, strict=True):
                options = CORE_COMBOS.get((kind, widget))
                assert options is None or value in options, (name, kind, widget, value)
        else:
            pytest.fail(f"{name}: node type {kind} is neither ours nor a core node we list")


def _check_widget(name: str, kind: str, input_name: str, spec, value) -> None:
    where = f"{name}: {kind}.{input_name} = {value!r}"
    io_type, kw = spec.io_type, spec.kwargs
    if input_name == "model_name":  # the list is the files found: the workflows use the shipped defaults
        assert value in (X2, X4), where
    elif io_type == "Combo":
        assert value in kw["options"], where
    elif io_type == "Boolean":
        assert isinstance(value, bool), where
    elif io_type in ("Int", "Float"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert io_type == "Float" or value == int(value), where
        assert kw.get("min", value) <= value <= kw.get("max", value), where
    elif io_type == "String":
        assert isinstance(value, str), where


@pytest.mark.parametrize("name", RUN_ON_FRESH_INSTALL)
def test_runs_on_a_fresh_install(name):
    """Nothing to download: ComfyUI's own example.png and the x4 default model shipped in weights/."""
    nodes = _load(name)["nodes"]
    assert not {n["type"] for n in nodes} & NEEDS_DOWNLOAD
    assert [n["widgets_values"][0] for n in nodes if n["type"] == "LoadImage"] == [FRESH_INPUT]
    assert [n["widgets_values"][0] for n in nodes if n["type"] == "SRT_LoadModel"] == [X4]
    saves = [n for n in nodes if n["type"] in ("SaveImage", "SRT_Compare")]
    assert saves, f"{name} has no output node"
    assert all(n["widgets_values"][0] for n in saves if n["type"] == "SaveImage")


def test_hires_fix_samples_upscales_and_samples_again():
    wf = _load("hires_fix")
    nodes = {n["id"]: n for n in wf["nodes"]}
    feeds = {(link[1], link[3]) for link in wf["links"]}  # (origin id, target id)

    def ids(kind):
        return [i for i, n in nodes.items() if n["type"] == kind]

    (upscale,) = ids("SRT_UpscaleTiled")
    first, second = sorted(ids("KSampler"), key=lambda i: nodes[i]["widgets_values"][-1], reverse=True)
    assert nodes[first]["widgets_values"][-1] == 1.0 and 0.3 <= nodes[second]["widgets_values"][-1] <= 0.7
    decode = next(d for d in ids("VAEDecode") if (first, d) in feeds)
    encode = next(e for e in ids("VAEEncode") if (upscale, e) in feeds)
    assert (decode, upscale) in feeds and (encode, second) in feeds
