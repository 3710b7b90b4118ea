"""Write ``example_workflows/*.json`` and their ``.jpg`` thumbnails with a real ComfyUI front end.

    SRT_HOST_HOME=~/.cache/srt-host      .venv/bin/python tests/host/make_example_workflows.py json
    SRT_HOST_HOME=~/.cache/srt-host-new  .venv/bin/python tests/host/make_example_workflows.py thumbnails

``json`` builds each graph below in the page (LiteGraph's ``createNode`` / ``connect``, widget values
set by name) and saves what the front end serializes, so the files are exactly what ComfyUI saves.
Build them with the oldest supported host (its front end's files load in every newer one).
``thumbnails`` loads each saved file as the template browser does and screenshots the graph
(render them with a current host: that is what users see). Then run ``check_examples.py``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import time
import uuid

from check_examples import EXAMPLES, ch, start

X4, X2 = "SRT_ATD-tiny_x4.safetensors", "SRT_ATD-tiny_x2.safetensors"
UPSCALE = {"tile_size": 0, "overlap": 32, "precision": "auto"}  # Super Resolution Upscale (tiled) defaults
THUMB_WIDTH = 800
# thumbnails show the graph as a user sees it: no node-source badges (the test folder's name),
# no canvas statistics, no toasts (the hi-res fix's missing checkpoint)
THUMB_SETTINGS = {"Comfy.NodeBadge.NodeSourceBadgeMode": "None", "Comfy.Graph.CanvasInfo": False}
HIDE_OVERLAYS_JS = """(() => {
    app.canvas.deselectAll?.();
    document.querySelectorAll('.p-toast, .p-dialog-mask').forEach(e => e.style.display = 'none');
    const missing = document.evaluate("//*[contains(text(), 'is missing')]", document, null,
                                      XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
    for (let i = 0; i < missing.snapshotLength; i++) {
        const panel = missing.snapshotItem(i).closest('.pointer-events-auto');
        if (panel) panel.style.display = 'none';
    }
    return true;
})()"""


def node(key, type_, pos, widgets=None, size=None, title=None) -> dict:
    return {"key": key, "type": type_, "pos": pos, "widgets": widgets or {}, "size": size, "title": title}


def sampler(denoise: float, seed_control: str) -> dict:
    return {
        "seed": 0,
        "control_after_generate": seed_control,
        "steps": 20,
        "cfg": 7.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": denoise,
    }


def note(key, pos, text, size=(360, 200)) -> dict:
    return node(key, "Note", pos, {"text": text}, size=list(size), title="Read me")


SPECS = {
    # (a) the basic upscale
    "upscale_x4": {
        "nodes": [
            node("img", "LoadImage", [0, 0], {"image": "example.png"}, size=[320, 380]),
            node("model", "SRT_LoadModel", [0, 440], {"model_name": X4}, size=[320, 200]),
            node("up", "SRT_UpscaleTiled", [380, 0], UPSCALE, size=[320, 210]),
            node("save", "SaveImage", [760, 0], {"filename_prefix": "SRT_upscaled"}, size=[400, 440]),
            note(
                "n",
                [380, 270],
                "Upscales example.png x4 with the small default model shipped in the pack's weights/ "
                "folder.\n\nPick any other checkpoint in Super Resolution Model Loader: official RGT / DRCT / ATD "
                "releases and community models go in weights/ or models/upscale_models (README: "
                "'Where to get checkpoints').\n\ntile_size 0 picks the tile from free memory; "
                "precision auto uses bf16/fp16 on GPUs where the model allows it.",
            ),
        ],
        "links": [
            ("img", "IMAGE", "up", "image"),
            ("model", 0, "up", "upscale_model"),
            ("up", 0, "save", "images"),
        ],
    },
    # (b) our default model against core's bicubic "Upscale Image By", measured against the original
    "compare_with_bicubic": {
        "nodes": [
            node(
                "img",
                "LoadImage",
                [0, 0],
                {"image": "example.png"},
                size=[320, 380],
                title="Original (reference)",
            ),
            node(
                "lr",
                "ImageScaleBy",
                [380, 0],
                {"upscale_method": "area", "scale_by": 0.25},
                size=[320, 90],
                title="Low-res copy (1/4)",
            ),
            node("model", "SRT_LoadModel", [380, 150], {"model_name": X4}, size=[320, 200]),
            node(
                "bicubic",
                "ImageScaleBy",
                [760, 0],
                {"upscale_method": "bicubic", "scale_by": 4.0},
                size=[320, 90],
                title="Bicubic x4 (core Upscale Image By)",
            ),
            node("up", "SRT_UpscaleTiled", [760, 150], UPSCALE, size=[320, 210], title="SR Transformers x4"),
            node(
                "cmp",
                "SRT_Compare",
                [1140, 0],
                {"mode": "side_by_side", "metrics_on": "y_channel", "border_crop": 4, "difference_gain": 8.0},
                size=[480, 600],
            ),
            note(
                "n",
                [0, 440],
                "Shrinks example.png to a quarter, upscales it back x4 with core's bicubic 'Upscale Image "
                "By' (A) and with the default SR model (B), and measures both against the original: PSNR "
                "and SSIM in the report, a before/after slider on Compare.\n\nSwap in any checkpoint "
                "(README: 'Where to get checkpoints') to compare models.",
                size=(700, 170),
            ),
        ],
        "links": [
            ("img", "IMAGE", "lr", "image"),
            ("lr", 0, "bicubic", "image"),
            ("lr", 0, "up", "image"),
            ("model", 0, "up", "upscale_model"),
            ("bicubic", 0, "cmp", "image_a"),
            ("up", 0, "cmp", "image_b"),
            ("img", "IMAGE", "cmp", "reference"),
        ],
    },
    # (c) hi-res fix: sample, upscale with the pack, sample again at denoise 0.5
    "hires_fix": {
        "nodes": [
            node(
                "ckpt",
                "CheckpointLoaderSimple",
                [0, 40],
                {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"},
            ),
            node(
                "pos",
                "CLIPTextEncode",
                [380, 40],
                {"text": "a lighthouse on a rocky coast at sunset, waves, detailed photo, sharp focus"},
                size=[400, 200],
                title="CLIP Text Encode (positive)",
            ),
            node(
                "neg",
                "CLIPTextEncode",
                [380, 290],
                {"text": "blurry, low quality, watermark, text"},
                size=[400, 200],
                title="CLIP Text Encode (negative)",
            ),
            node("latent", "EmptyLatentImage", [0, 200], {"width": 512, "height": 512, "batch_size": 1}),
            node("k1", "KSampler", [820, 40], sampler(1.0, "randomize"), size=[300, 262]),
            node("dec1", "VAEDecode", [1160, 40], size=[200, 50]),
            node("prev", "PreviewImage", [1160, 130], size=[300, 300], title="First pass (512 px)"),
            node("model", "SRT_LoadModel", [0, 620], {"model_name": X2}, size=[320, 200]),
            node("up", "SRT_UpscaleTiled", [360, 600], UPSCALE, size=[300, 210]),
            node("enc", "VAEEncode", [700, 600], size=[200, 50]),
            node(
                "k2",
                "KSampler",
                [940, 600],
                sampler(0.5, "fixed"),
                size=[300, 262],
                title="KSampler (refine)",
            ),
            node("dec2", "VAEDecode", [1280, 600], size=[200, 50]),
            node("save", "SaveImage", [1280, 690], {"filename_prefix": "SRT_hires_fix"}, size=[300, 300]),
            note(
                "n",
                [0, 350],
                "Hi-res fix for users with a diffusion checkpoint: put one in models/checkpoints and pick "
                "it in Load Checkpoint (SD 1.5 settings shown). The first pass samples 512 px; the pack "
                "upscales the decoded image x2 with its default model; the second KSampler refines it at "
                "denoise 0.5 (lower keeps more of the upscale).",
                size=(340, 150),
            ),
        ],
        "links": [
            ("ckpt", "MODEL", "k1", "model"),
            ("ckpt", "MODEL", "k2", "model"),
            ("ckpt", "CLIP", "pos", "clip"),
            ("ckpt", "CLIP", "neg", "clip"),
            ("pos", 0, "k1", "positive"),
            ("neg", 0, "k1", "negative"),
            ("pos", 0, "k2", "positive"),
            ("neg", 0, "k2", "negative"),
            ("latent", 0, "k1", "latent_image"),
            ("k1", 0, "dec1", "samples"),
            ("ckpt", "VAE", "dec1", "vae"),
            ("dec1", 0, "prev", "images"),
            ("dec1", 0, "up", "image"),
            ("model", 0, "up", "upscale_model"),
            ("up", 0, "enc", "pixels"),
            ("ckpt", "VAE", "enc", "vae"),
            ("enc", 0, "k2", "latent_image"),
            ("k2", 0, "dec2", "samples"),
            ("ckpt", "VAE", "dec2", "vae"),
            ("dec2", 0, "save", "images"),
        ],
        "groups": [
            {"title": "1. Generate (512 px)", "bounding": [-20, -40, 1500, 560]},
            {
                "title": "2. Upscale x2 with SR Transformers, refine at denoise 0.5",
                "bounding": [-20, 540, 1620, 480],
            },
        ],
    },
    # (d) a batch of frames
    "upscale_frames": {
        "nodes": [
            node("img", "LoadImage", [0, 0], {"image": "example.png"}, size=[320, 380]),
            node(
                "frames",
                "RepeatImageBatch",
                [380, 0],
                {"amount": 4},
                size=[320, 60],
                title="Frames (stand-in: 4 copies)",
            ),
            node("model", "SRT_LoadModel", [380, 120], {"model_name": X4}, size=[320, 200]),
            node("up", "SRT_UpscaleTiled", [760, 0], UPSCALE, size=[320, 210]),
            node("save", "SaveImage", [1140, 0], {"filename_prefix": "SRT_frames/frame"}, size=[400, 440]),
            note(
                "n",
                [380, 380],
                "Upscales a batch of frames one by one with bounded memory and saves one PNG per frame "
                "(output/SRT_frames/).\n\nReplace Load Image + Repeat Image Batch with your frames, e.g. "
                "core Load Video -> Get Video Components (images), and save a video with Create Video -> "
                "Save Video.",
                size=(360, 210),
            ),
        ],
        "links": [
            ("img", "IMAGE", "frames", "image"),
            ("frames", 0, "up", "image"),
            ("model", 0, "up", "upscale_model"),
            ("up", 0, "save", "images"),
        ],
    },
}

BUILD_JS = """(async (spec) => {
    app.graph.clear();
    const made = {};
    for (const n of spec.nodes) {
        const node = LiteGraph.createNode(n.type);
        if (!node) throw new Error('unknown node type ' + n.type);
        node.pos = n.pos;
        app.graph.add(node);
        if (n.title) node.title = n.title;
        for (const [name, value] of Object.entries(n.widgets)) {
            const w = (node.widgets || []).find(w => w.name === name);
            if (!w) throw new Error(n.type + ' has no widget ' + name + ': ' + (node.widgets || []).map(w => w.name));
            w.value = value;
        }
        if (n.size) node.size = [Math.max(n.size[0], node.size[0]), Math.max(n.size[1], node.size[1])];
        made[n.key] = node;
    }
    for (const [a, out, b, inp] of spec.links) {
        const src = made[a], dst = made[b];
        const o = typeof out === 'string' ? src.findOutputSlot(out) : out;
        const i = dst.findInputSlot(inp);
        if (o < 0 || i < 0 || !src.connect(o, dst, i)) throw new Error(`cannot link ${a}.${out} -> ${b}.${inp}`);
    }
    // the loaders' info boxes fill in from the server; the saved size holds the text as drawn
    // (meanwhile the front end may resize other nodes, e.g. a loader of a missing checkpoint:
    // they keep the size they were built with)
    const built = new Map(app.graph._nodes.map(n => [n, [...n.size]]));
    for (let t = 0; t < 100; t++) {
        const loaders = app.graph._nodes.filter(n => n.type === 'SRT_LoadModel');
        if (loaders.every(n => (n.widgets || []).some(w => w.name === 'srt_model_info' && w.value))) break;
        await new Promise(r => setTimeout(r, 100));
    }
    await new Promise(r => setTimeout(r, 300));
    for (const node of app.graph._nodes) {
        if (!node.type.startsWith('SRT_')) {
            node.size = built.get(node);
            continue;
        }
        const need = node.computeSize();
        node.size = [Math.max(node.size[0], need[0]), Math.max(node.size[1], need[1])];
    }
    for (const g of spec.groups || []) {
        const group = new LiteGraph.LGraphGroup(g.title);
        group.pos = [g.bounding[0], g.bounding[1]];
        group.size = [g.bounding[2], g.bounding[3]];
        app.graph.add(group);
    }
    return app.graph.serialize();
})"""

# Fit the graph into a viewport; returns the screen rectangle of the graph.
FIT_JS = """((box) => {
    const nodes = app.graph._nodes, title = LiteGraph.NODE_TITLE_HEIGHT;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - title);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    for (const g of app.graph._groups || []) {
        const [gx, gy, gw, gh] = g._bounding || [g.pos[0], g.pos[1], g.size[0], g.size[1]];
        x0 = Math.min(x0, gx); y0 = Math.min(y0, gy); x1 = Math.max(x1, gx + gw); y1 = Math.max(y1, gy + gh);
    }
    const pad = 20, rect = app.canvas.canvas.getBoundingClientRect();
    const scale = Math.min(1, box.w / (x1 - x0 + 2 * pad), box.h / (y1 - y0 + 2 * pad));
    const w = (x1 - x0 + 2 * pad) * scale, h = (y1 - y0 + 2 * pad) * scale;
    const left = box.x + (box.w - w) / 2, top = box.y + (box.h - h) / 2;
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [(left - rect.left) / scale - x0 + pad, (top - rect.top) / scale - y0 + pad];
    app.canvas.setDirty(true, true);
    return {x: left, y: top, w, h, scale, ds: {scale, offset: [...app.canvas.ds.offset]}};
})"""

# what the page may cover the canvas with, kept out of the thumbnails (and graph-independent)
SCREEN = (1600, 1000)
FREE_AREA = {"x": 100, "y": 120, "w": 1400, "h": 780}


def build_json() -> None:
    h = start()
    try:
        with ch.ui_session(h, width=SCREEN[0], height=SCREEN[1], timeout=300) as ui:
            ui.wait_app()
            for name, spec in SPECS.items():
                graph = ui.eval(f"{BUILD_JS}({json.dumps(spec)})")
                view = ui.eval(f"{FIT_JS}({json.dumps({'x': 0, 'y': 0, 'w': 1400, 'h': 800})})")
                graph["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-sr-transformers/{name}"))
                graph.setdefault("extra", {})["ds"] = view["ds"]  # the view the file opens with
                path = os.path.join(EXAMPLES, f"{name}.json")
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump(graph, fh, indent=2)
                    fh.write("\n")
                print(f"wrote {path}: {len(graph['nodes'])} nodes, {len(graph['links'])} links")
            errors = [c for c in ui.console if c.startswith("exception") and "reading 'id'" not in c]
            if errors:
                print("JS errors:", *errors, sep="\n")
    finally:
        ch.stop(h)


def thumbnails() -> None:
    from check_examples import UI_SETTINGS, load_in_page, workflows
    from PIL import Image

    h = start(full_size=True, ui_settings={**UI_SETTINGS, **THUMB_SETTINGS})
    try:
        with ch.ui_session(h, width=SCREEN[0], height=SCREEN[1], timeout=300) as ui:
            ui.wait_app()
            for name, workflow in workflows().items():
                load_in_page(ui, workflow)
                rect = ui.eval(f"{FIT_JS}({json.dumps(FREE_AREA)})")
                time.sleep(3)  # image previews, DOM widgets, notifications
                ui.eval(HIDE_OVERLAYS_JS)
                time.sleep(0.5)
                png = base64.b64decode(ui.call("Page.captureScreenshot", format="png")["data"])
                shot = Image.open(io.BytesIO(png)).convert("RGB")
                box = tuple(
                    round(v) for v in (rect["x"], rect["y"], rect["x"] + rect["w"], rect["y"] + rect["h"])
                )
                thumb = shot.crop(box)
                if thumb.width > THUMB_WIDTH:
                    thumb = thumb.resize(
                        (THUMB_WIDTH, round(thumb.height * THUMB_WIDTH / thumb.width)), Image.LANCZOS
                    )
                path = os.path.join(EXAMPLES, f"{name}.jpg")
                thumb.save(path, quality=85, optimize=True)
                print(f"wrote {path}: {thumb.width}x{thumb.height}")
    finally:
        ch.stop(h)


if __name__ == "__main__":
    steps = {"json": build_json, "thumbnails": thumbnails}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} json|thumbnails")
    os.makedirs(EXAMPLES, exist_ok=True)
    steps[sys.argv[1]]()
