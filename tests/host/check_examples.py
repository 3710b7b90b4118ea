"""Real-host check of ``example_workflows/`` (not collected by pytest; needs a host):

    SRT_HOST_HOME=~/.cache/srt-host      python tests/host/check_examples.py   # ComfyUI 0.3.64
    SRT_HOST_HOME=~/.cache/srt-host-new  python tests/host/check_examples.py   # ComfyUI 0.33

A fresh workdir with ComfyUI's own ``input/example.png`` and nothing downloaded. Each workflow is
loaded in the front end (headless chromium) as the template browser loads it
(``app.loadGraphData``): every node type is known, no node is flagged, the widget values read
back as saved. Then it is queued from the page (``app.queuePrompt``): the ones that need nothing
but the pack and ComfyUI finish with outputs; the hi-res fix stops only at its diffusion
checkpoint. ``/api/workflow_templates`` lists them all and serves each thumbnail.

Until the default models ship in ``weights/``, ``tests/assets/ATD_light_x2_trained.safetensors``
stands in under their names in the workdir's ``models/upscale_models`` (never in ``weights/``).
``example.png`` is ComfyUI's, shrunk to 96 px so CPU runs stay short (``--full-size``: as shipped,
768 px; on 2 CPU cores the x4 upscale of it takes longer than the default 600 s ``--timeout``).
Prints one line per check; exit code 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(REPO), "shared", "host"))
import comfy_harness as ch  # noqa: E402

EXAMPLES = os.path.join(REPO, "example_workflows")
DEFAULT_MODELS = ("SRT_ATD-tiny_x2.safetensors", "SRT_ATD-tiny_x4.safetensors")
STAND_IN = os.path.join(REPO, "tests", "assets", "ATD_light_x2_trained.safetensors")
NEEDS_DOWNLOAD = {"hires_fix": "CheckpointLoaderSimple"}  # workflow -> the only node allowed to fail
REFUSAL_GRACE = 30.0  # seconds without a queued prompt before asking the server why
STAND_IN_USED = False
UI_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> bool:
    results.append((bool(ok), what))
    print(f"{'PASS' if ok else 'FAIL'}  {what}", flush=True)
    return bool(ok)


def workflows() -> dict[str, dict]:
    out = {}
    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".json"):
            with open(os.path.join(EXAMPLES, name), encoding="utf-8") as fh:
                out[name[: -len(".json")]] = json.load(fh)
    return out


def stand_ins() -> list[str]:
    """Default models missing from weights/: the test asset under their names (for models/)."""
    global STAND_IN_USED
    links = []
    for name in DEFAULT_MODELS:
        if not os.path.exists(os.path.join(REPO, "weights", name)):
            os.makedirs("/tmp/srt_stand_ins", exist_ok=True)
            link = os.path.join("/tmp/srt_stand_ins", name)
            if not os.path.lexists(link):
                os.symlink(STAND_IN, link)
            links.append(link)
    STAND_IN_USED = bool(links)
    return links


def start(full_size: bool = False, ui_settings: dict | None = None):
    """A server with the pack, ComfyUI's example.png and the default models (or stand-ins)."""
    links = stand_ins()
    h = ch.start([REPO], models={"upscale_models": links}, ui_settings=ui_settings or UI_SETTINGS)
    example = os.path.join(ch.comfyui_dir(), "input", "example.png")
    target = os.path.join(h.workdir, "input", "example.png")
    if full_size:
        shutil.copy(example, target)
    else:
        from PIL import Image

        Image.open(example).convert("RGB").resize((96, 96), Image.LANCZOS).save(target)
    if links:
        print(
            f"stand-ins for the default models (not shipped yet): {', '.join(map(os.path.basename, links))}"
        )
    return h


def load_in_page(ui, workflow: dict, tries: int = 3) -> list[dict]:
    """Load ``workflow`` as the template browser does; what the page then holds, node by node.

    A fresh page of a current front end may still be opening its own start-up workflow when the
    first template is loaded, and that one then replaces it (seen once on 0.33: the first example
    read back as core's default graph). The load is repeated until the page holds the workflow's
    nodes (same ids and types); what it holds then is returned either way, for the checks."""
    wanted = sorted((n["id"], n["type"]) for n in workflow["nodes"])
    for attempt in range(tries):
        nodes = _load_once(ui, workflow)
        if sorted((n["id"], n["type"]) for n in nodes) == wanted:
            break
        print(f"NOTE  the page held other nodes after load {attempt + 1}; loading again")
        time.sleep(2)
    return nodes


def _load_once(ui, workflow: dict) -> list[dict]:
    return ui.eval(
        f"""(async () => {{
        await app.loadGraphData({json.dumps(workflow)});
        await new Promise(r => setTimeout(r, 500));
        const known = LiteGraph.registered_node_types;
        return app.graph.serialize().nodes.map(n => {{
            const live = app.graph.getNodeById(n.id);
            return {{id: n.id, type: n.type, known: !!known[n.type], has_errors: !!live.has_errors,
                     widgets_values: n.widgets_values ?? null}};
        }});
    }})()"""
    )


# What the front end drew, node by node, in graph units: the node's rectangle with its title bar,
# the size the front end itself needs (title, slots, widgets: LGraphNode.computeSize) and every
# text box (notes, the pack's info and report boxes): its text against its visible area.
LAYOUT_JS = """(() => app.graph._nodes.map(n => {
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    const rect = n.boundingRect ? [...n.boundingRect] : [n.pos[0], n.pos[1] - th, n.size[0], n.size[1] + th];
    const boxes = (n.widgets || []).filter(w => w.element && w.element.tagName === 'TEXTAREA').map(w => ({
        name: w.name, lines: (w.element.value || '').split('\\n').length,
        scroll: [w.element.scrollWidth, w.element.scrollHeight],
        client: [w.element.clientWidth, w.element.clientHeight],
        shown: w.element.offsetParent !== null}));
    return {id: n.id, type: n.type, title: n.title, rect, size: [...n.size],
            needs: n.computeSize ? [...n.computeSize()] : [...n.size], boxes};
}))()"""


def overlaps(a: list[float], b: list[float]) -> float:
    """Area two rectangles ``[x, y, w, h]`` share."""
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0.0


def layout_problems(workflow: dict, drawn: list[dict]) -> list[str]:
    """Overlapping nodes, nodes the front end drew at another size than saved (it widens a node
    whose title, slots or widgets do not fit), nodes smaller than they need, and text boxes whose
    text does not fit (cut sideways, or lines hidden below)."""
    saved = {n["id"]: n.get("size") for n in workflow["nodes"]}
    problems = []
    for i, a in enumerate(drawn):
        for b in drawn[i + 1 :]:
            area = overlaps(a["rect"], b["rect"])
            if area:
                problems.append(f"'{a['title']}' overlaps '{b['title']}' ({area:.0f} px²)")
        want = saved.get(a["id"])
        if want and any(abs(float(x) - y) > 1 for x, y in zip(want, a["size"], strict=True)):
            problems.append(
                f"'{a['title']}' drawn {a['size'][0]:.0f}x{a['size'][1]:.0f}, saved {want[0]}x{want[1]}"
            )
        if a["size"][0] + 0.5 < a["needs"][0] or a["size"][1] + 0.5 < a["needs"][1]:
            problems.append(f"'{a['title']}' {a['size']} smaller than its content needs {a['needs']}")
        for box in a["boxes"]:
            if not box["shown"]:
                problems.append(f"'{a['title']}' text box {box['name']} hidden")
            elif box["scroll"][0] > box["client"][0] + 1:
                problems.append(
                    f"'{a['title']}' {box['name']}: lines cut ({box['scroll'][0]} px wide text in {box['client'][0]} px)"
                )
            elif box["scroll"][1] > box["client"][1] + 1:
                problems.append(
                    f"'{a['title']}' {box['name']}: {box['lines']} lines in {box['client'][1]} px, {box['scroll'][1]} px needed"
                )
    return problems


def check_layout(ui, name: str, workflow: dict) -> None:
    """What the front end draws from the workflow: nothing overlaps, nothing is cut."""
    if any(n["type"] == "SRT_LoadModel" for n in workflow["nodes"]):
        ui.wait_for(
            "app.graph._nodes.filter(n => n.type === 'SRT_LoadModel')"
            ".every(n => (n.widgets || []).some(w => w.name === 'srt_model_info' && w.value))",
            timeout=60,
        )
        time.sleep(1.0)  # the node grows to its info text, then the page draws
    drawn = ui.eval(LAYOUT_JS)
    problems = layout_problems(workflow, drawn)
    check(not problems, f"{name}: no node overlaps or is cut as drawn ({problems or 'all clear'})")


FRESH_MAX_WIDTH = 400  # px: a node added from the search must not come in wider than this


def check_fresh_nodes(ui) -> None:
    """Each of our nodes as the search adds it (default size): not too wide, nothing cut."""
    ui.eval("app.graph.clear()")
    drawn = ui.eval(
        """(async () => {
        for (const [i, t] of ['SRT_LoadModel', 'SRT_UpscaleTiled', 'SRT_Compare'].entries()) {
            const n = LiteGraph.createNode(t); n.pos = [40 + 460 * i, 80]; app.graph.add(n);
        }
        await new Promise(r => setTimeout(r, 1000));
        return """
        + LAYOUT_JS
        + "; })()"
    )
    for n in drawn:
        problems = layout_problems({"nodes": []}, [n])
        check(
            n["size"][0] <= FRESH_MAX_WIDTH and not problems,
            f"{n['title']} added from the search: {n['size'][0]:.0f}x{n['size'][1]:.0f} px "
            f"({problems or 'nothing cut'}; boxes {n['boxes']})",
        )
    ui.eval("app.graph.clear()")


def _finished(h, before: set[str]) -> dict | None:
    """The first finished history entry not in ``before``."""
    for pid, entry in ch._http(h, "GET", "/history")[1].items():
        if pid not in before and entry.get("status", {}).get("status_str") in ("success", "error"):
            return entry
    return None


def _busy(h) -> bool:
    queue = ch._http(h, "GET", "/queue")[1]
    return bool(queue.get("queue_running") or queue.get("queue_pending"))


def queue_from_page(h, ui, timeout: float = 600) -> dict:
    """Queue the loaded graph as the Run button does: its history entry, or the server's refusal.

    ``via`` says who queued it: "page" (``app.queuePrompt``), or "api" when the page queued nothing
    within REFUSAL_GRACE and the page's own ``graphToPrompt()`` was accepted by ``POST /prompt``.
    """
    before = set(ch._http(h, "GET", "/history")[1])
    queued = ui.eval("(async () => await app.queuePrompt(0, 1))()")
    start, via = time.monotonic(), "page"
    while time.monotonic() < start + timeout:
        entry = _finished(h, before)
        if entry is not None:
            return {
                "status": entry["status"]["status_str"],
                "entry": entry,
                "via": via,
                "page_result": queued,
            }
        if via == "page" and not _busy(h) and time.monotonic() - start > REFUSAL_GRACE:
            prompt = ui.eval("(async () => (await app.graphToPrompt()).output)()")
            st, body = ch._http(h, "POST", "/prompt", body={"prompt": prompt})
            if st != 200:  # refused: the reasons
                return {"status": "invalid", "http": st, "body": body, "page_result": queued}
            via = "api"
        time.sleep(0.5)
    return {"status": "timeout", "via": via, "page_result": queued}


def outputs(entry: dict) -> list[dict]:
    return [img for out in entry.get("outputs", {}).values() for img in out.get("images", [])]


def check_workflow(h, ui, name: str, workflow: dict, timeout: float = 600) -> None:
    nodes = load_in_page(ui, workflow)
    unknown = [n["type"] for n in nodes if not n["known"]]
    check(not unknown, f"{name}: every node type exists in the front end ({unknown or 'all known'})")
    allowed = NEEDS_DOWNLOAD.get(name)  # a missing diffusion checkpoint is flagged by newer front ends
    flagged = [n["type"] for n in nodes if n["has_errors"] and n["type"] != allowed]
    check(not flagged, f"{name}: no node flagged after loading ({flagged or 'none'})")
    saved = {n["id"]: n.get("widgets_values") or [] for n in workflow["nodes"]}
    changed = [n["type"] for n in nodes if saved.get(n["id"]) != (n["widgets_values"] or [])]
    check(not changed, f"{name}: widget values read back as saved ({changed or 'all equal'})")
    check_layout(ui, name, workflow)

    r = queue_from_page(h, ui, timeout)
    if name in NEEDS_DOWNLOAD:
        failing = {e.get("class_type") for e in (r.get("body") or {}).get("node_errors", {}).values()}
        check(
            r["status"] == "invalid" and failing == {NEEDS_DOWNLOAD[name]},
            f"{name}: queued, stops only at the missing diffusion checkpoint ({r['status']}: {failing})",
        )
        return
    images = outputs(r.get("entry", {}))
    check(
        r["status"] == "success" and images,
        f"{name}: queued ({r.get('via')}), ran: {r['status']}, {len(images)} images "
        f"{'' if r['status'] == 'success' else json.dumps(r)[:1500]}",
    )
    if r.get("via") == "api":
        print(f"NOTE  {name}: the page's queuePrompt returned {r.get('page_result')} and queued nothing")
    saved_files = [i for i in images if i.get("type") == "output"]
    if name == "upscale_frames":
        check(len(saved_files) > 1, f"{name}: one saved image per frame ({len(saved_files)})")
    if name == "upscale_x4" and saved_files:
        f = saved_files[0]
        size = ch.png_size(os.path.join(h.output_dir, f.get("subfolder", ""), f["filename"]))
        with open(os.path.join(h.input_dir, "example.png"), "rb") as fh:
            w, hgt = ch.png_size(fh.read())
        scale = 2 if STAND_IN_USED else 4  # the stand-in is an x2 model
        check(size == (w * scale, hgt * scale), f"{name}: output {size} = x{scale} of the {w}x{hgt} input")


def check_templates(h, names: list[str]) -> None:
    st, listed = ch._http(h, "GET", "/api/workflow_templates")
    mine = listed.get(os.path.basename(REPO), []) if st == 200 else []
    check(sorted(mine) == sorted(names), f"/api/workflow_templates lists {sorted(mine)}")
    for name in names:
        st, _ = ch._http(h, "GET", f"/api/workflow_templates/{os.path.basename(REPO)}/{name}.jpg", raw=True)
        check(st == 200, f"thumbnail {name}.jpg served ({st})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full-size", action="store_true", help="ComfyUI's example.png as shipped")
    parser.add_argument("--only", nargs="*", help="workflow names (default: all)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per queued workflow")
    args = parser.parse_args()
    found = workflows()
    h = start(args.full_size)
    try:
        ch.nodes(h)
        errors = ch.import_errors(h)
        version = ch._http(h, "GET", "/system_stats")[1]["system"].get("comfyui_version")
        print(f"host: ComfyUI {version} at {ch.comfyui_dir()}")
        check(not errors, f"pack imports clean ({errors or 'no errors'})")
        check_templates(h, list(found))
        with ch.ui_session(h, width=1600, height=1000, timeout=300) as ui:
            ui.wait_app()
            check_fresh_nodes(ui)  # first: node ids of executed workflows would bring back their outputs
            for name, workflow in found.items():
                if not args.only or name in args.only:
                    check_workflow(h, ui, name, workflow, args.timeout)
            check_console(ui)
    finally:
        ch.stop(h)
    return summary()


# The page loads no other pack's scripts, so a front-end notice (e.g. "[ComfyUI Notice]
# "scripts/widgets.js" is an internal module", printed by the front end's own shim when an
# extension imports it) is about ours, whoever prints it; so is any line naming our files.
OUR_WEB_FILES = tuple(sorted(f for f in os.listdir(os.path.join(REPO, "web")) if f.endswith(".js")))


def ours_in_console(console: list[str]) -> list[str]:
    """Console lines about the pack: naming its scripts or extension folder, its log tag, or a
    front-end notice that an extension imported an internal module (only our scripts are loaded).
    The front end's own deprecation warnings (its legacy menu, its mask editor) name neither."""
    marks = (*OUR_WEB_FILES, f"/extensions/{os.path.basename(REPO)}/", "SR Transformers", "SRT ")
    notices = ("[ComfyUI Notice]", "internal module", "not part of the public API")
    return [c for c in console if any(m in c for m in marks) or any(n in c for n in notices)]


def check_console(ui) -> None:
    """No uncaught exception in the page (the front end's own 'reading id' noise aside), and no
    console line about the pack: not its warnings, not a notice the front end prints about it."""
    js_errors = [c for c in ui.console if c.startswith("exception") and "reading 'id'" not in c]
    check(not js_errors, f"no uncaught JS errors ({js_errors[:3] or 'none'})")
    about_us = ours_in_console(ui.console)
    check(not about_us, f"no console notice or warning about the pack ({about_us[:3] or 'none'})")


def summary() -> int:
    """Print the tally; the exit code (1 if any check failed)."""
    failed = [what for ok, what in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
