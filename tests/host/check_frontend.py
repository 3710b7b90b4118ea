"""Real-host check of the pack's front end, as a new user meets it (not collected by pytest):

    SRT_HOST_HOME=~/.cache/srt-host      python tests/host/check_frontend.py --shots /tmp/fe64
    SRT_HOST_HOME=~/.cache/srt-host-new  python tests/host/check_frontend.py --shots /tmp/fe33

In headless chromium on a fresh workdir (the default models, ComfyUI's example.png shrunk to
96 px): the node search finds our nodes by "super resolution", "sr", "psnr", "ssim", "upscale" and
"compare" (where no two results share a name), and by "RGT", "DRCT", "ATD" and the loader's old
name where the front end searches aliases (0.33; 0.3.64's searches names only); a table of where
the search ranks our nodes for what users type, with two rules (``check_ranks``); the
``compare_with_bicubic`` example is queued from the page, then the loader's info box and Compare's
report box show all their lines and neither node got wider; the slider follows the pointer, a click
pins it, leaving the image or the node does not move a pinned line and returns a free one to the
middle, a second click releases it; after a page reload the loader shows its info again without a
run, and still after a re-run that ComfyUI answers from its cache; the help page of each node fits
the side panel (nothing wider than the panel); no console line is about the pack (its warnings, or
a front-end notice such as an internal-module import). Screenshots of each step go to ``--shots``.
One line per check; exit code 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from check_examples import (  # noqa: E402
    ch,
    check,
    check_console,
    load_in_page,
    queue_from_page,
    start,
    summary,
    workflows,
)

LOADER, UPSCALER, COMPARE = "SRT_LoadModel", "SRT_UpscaleTiled", "SRT_Compare"
SEARCHES = {  # what users type -> the node it must find, on every supported front end
    "super resolution": LOADER,
    "sr": LOADER,
    "psnr": COMPARE,
    "ssim": COMPARE,
    "upscale": UPSCALER,
    "compare": COMPARE,
}
# found through the nodes' search aliases, on front ends that search them (not 0.3.64's)
ALIAS_SEARCHES = {"RGT": LOADER, "DRCT": LOADER, "ATD": LOADER, "load sr model": LOADER}

NODE_JS = """((type) => app.graph._nodes.filter(n => n.type === type).map(n => {
    const box = (name) => {
        const w = (n.widgets || []).find(w => w.name === name);
        const el = w && w.element;
        return el ? {text: el.value, scroll: el.scrollHeight, client: el.clientHeight,
                     visible: el.offsetParent !== null} : null;
    };
    const s = n.srtCompare;
    return {id: n.id, size: [...n.size], pos: [...n.pos], info: box('srt_model_info'),
            report: box('srt_compare_report'),
            slider: s ? {split: s.split, pinned: s.pinned, rest: s.rest, rect: s.rect,
                         frames: s.frames.length} : null};
}))"""

# graph coordinates -> page (CSS) pixels
TO_PAGE_JS = """((p) => {
    const ds = app.canvas.ds, r = app.canvas.canvas.getBoundingClientRect();
    return [r.left + (p[0] + ds.offset[0]) * ds.scale, r.top + (p[1] + ds.offset[1]) * ds.scale];
})"""

FOCUS_JS = """((ids) => {
    const nodes = ids.map(id => app.graph.getNodeById(id));
    let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
    for (const n of nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 40);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const r = app.canvas.canvas.getBoundingClientRect();
    const scale = Math.min(1.2, (r.width - 200) / (x1 - x0), (r.height - 200) / (y1 - y0));
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [100 / scale - x0, 120 / scale - y0];
    app.canvas.setDirty(true, true);
    return scale;
})"""

# the node's help page in the side panel, found through the front end's own stores (pinia)
HELP_JS = """(async (type) => {
    const pinia = document.querySelector('#vue-app')?.__vue_app__?.config?.globalProperties?.$pinia;
    const stores = pinia?._s;
    const help = stores?.get('nodeHelp'), defs = stores?.get('nodeDef'), right = stores?.get('rightSidePanel');
    if (help && defs) {  // 1.27: the node library's help page
        await app.extensionManager.sidebarTab.toggleSidebarTab?.('node-library');
        if (app.extensionManager.sidebarTab.activeSidebarTabId !== 'node-library')
            await app.extensionManager.sidebarTab.toggleSidebarTab?.('node-library');
        help.openHelp(defs.nodeDefsByName?.[type]);
    } else if (right) {  // newer: the selected node's Info tab in the right side panel
        app.graph.clear();
        const node = LiteGraph.createNode(type);
        node.pos = [200, 200];
        app.graph.add(node);
        (app.canvas.selectItems ?? app.canvas.selectNodes).call(app.canvas, [node]);
        await new Promise(r => setTimeout(r, 300));
        right.openPanel('info');
    } else return {error: 'no help page store: ' + [...(stores?.keys() || [])].join(',')};
    await new Promise(r => setTimeout(r, 1500));
    const page = document.querySelector('.node-help-content, .markdown-content, [class*="node-help"], [class*="prose"]');
    if (!page) return {error: 'help page not found'};
    const panel = page.getBoundingClientRect();
    // what sticks out of the panel: the innermost elements (a table, a code span, a word)
    const wide = [...page.querySelectorAll('*')].filter(e => {
        const b = e.getBoundingClientRect();
        let scrolls = false;  // inside something that scrolls sideways (a code block)
        for (let x = e; x && x !== page && !scrolls; x = x.parentElement)
            scrolls = ['auto', 'scroll'].includes(getComputedStyle(x).overflowX);
        return b.width > 0 && !scrolls && b.right > panel.right + 1 &&
               ![...e.children].some(c => c.getBoundingClientRect().right > panel.right + 1);
    }).map(e => `${e.tagName} '${(e.innerText || '').slice(0, 40)}' +${Math.round(e.getBoundingClientRect().right - panel.right)} px`);
    return {width: Math.round(panel.width), tables: page.querySelectorAll('table').length,
            text: (page.innerText || '').length, wide: wide.slice(0, 5)};
})"""


def nodes(ui, type_: str) -> list[dict]:
    return ui.eval(f"{NODE_JS}({json.dumps(type_)})")


def shot(ui, folder: str | None, name: str) -> None:
    if folder:
        ui.screenshot(os.path.join(folder, f"{name}.png"))


def mouse(ui, kind: str, page_xy, buttons: int = 0) -> None:
    x, y = page_xy
    if kind == "move":
        ui.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, buttons=buttons,
                button="left" if buttons else "none")  # fmt: skip
    else:
        for t in ("mousePressed", "mouseReleased"):
            ui.call("Input.dispatchMouseEvent", type=t, x=x, y=y, button="left", clickCount=1)
    time.sleep(0.3)


def search(ui, text: str, limit: int = 20) -> list[str]:
    """The node search box's result names for ``text``, as the user sees them (the first ``limit``)."""
    opened = ui.eval("""(async () => { const c = app.extensionManager?.command;
        if (!c?.commands?.some?.(x => x.id === 'Workspace.SearchBox.Toggle')) return false;
        await c.execute('Workspace.SearchBox.Toggle'); return true; })()""")
    if not opened:  # 0.3.64's front end: double click on the empty canvas
        ui.search_node(text)
        return (
            ui.eval(f"""Array.from(document.querySelectorAll(
              '.comfy-vue-node-search-container li, .p-autocomplete-option, .litesearchbox .lite-search-item'))
              .map(e => e.innerText.trim().split('\\n')[0]).filter(Boolean).slice(0, {limit})""")
            or []
        )
    time.sleep(1.0)
    ui.call("Input.insertText", text=text)
    time.sleep(1.0)
    return (
        ui.eval(
            """Array.from(document.querySelectorAll('[role=option]'))
        .map(e => e.innerText.trim().split('\\n')[0]).filter(Boolean).slice(0, """
            + str(limit)
            + ")"
        )
        or []
    )


def check_search(ui) -> None:
    ui.eval("app.graph.clear()")
    defs = ui.eval("""(async () => { const r = await fetch('/object_info'); const j = await r.json();
        return Object.fromEntries(Object.entries(j).map(([k, v]) => [k, v.display_name || k])); })()""")
    aliases = ui.eval("""(async () => { const r = await fetch('/object_info/SRT_LoadModel');
        return !!(await r.json()).SRT_LoadModel?.search_aliases; })()""")
    print(f"NOTE  this host {'sends' if aliases else 'has no'} search aliases")
    for query, expected in {**SEARCHES, **(ALIAS_SEARCHES if aliases else {})}.items():
        found = search(ui, query)
        ui.key("Escape", "Escape", 27)
        time.sleep(0.3)
        ours = defs[expected]
        check(any(ours in label for label in found), f"search {query!r} finds {ours!r} ({found[:6]})")
        if query == "compare":
            labels = [label.split("  ")[0] for label in found]
            dupes = sorted({label for label in labels if labels.count(label) > 1})
            check(not dupes, f"search 'compare': no two results share a name ({dupes or found[:6]})")


RANK_QUERIES = ("upscale", "upscale model", "super resolution", "sr", "psnr", "compare")
RANK_DEPTH = 64  # results read per query


def rank(found: list[str], name: str) -> int | None:
    """1-based place of the result labelled ``name`` (a label may carry a badge after it)."""
    for i, label in enumerate(found, 1):
        if label.split("  ")[0].strip() == name or label.startswith(name + " "):
            return i
    return None


def check_ranks(ui, version: str) -> dict:
    """Where the search puts our three nodes for what users type; a table, and two rules:
    "super resolution" lists our loader and upscaler before any video node, and each query
    that names one of our nodes' jobs ("psnr", "compare") finds it on the first screen."""
    ui.eval("app.graph.clear()")
    defs = ui.eval("""(async () => { const r = await fetch('/object_info'); const j = await r.json();
        return Object.fromEntries(Object.entries(j).map(([k, v]) => [k, v.display_name || k])); })()""")
    names = {t: defs[t] for t in (LOADER, UPSCALER, COMPARE)}
    table = {}
    print(f"\nsearch ranks on ComfyUI {version} (place among the results; - = not in the first {RANK_DEPTH})")
    print(f"| query | results | {' | '.join(names.values())} | first results |")
    print(f"|---|---|{'---|' * len(names)}---|")
    for query in RANK_QUERIES:
        found = search(ui, query, RANK_DEPTH)
        ui.key("Escape", "Escape", 27)
        time.sleep(0.3)
        places = {t: rank(found, n) for t, n in names.items()}
        table[query] = {"results": len(found), **places, "first": found[:4]}
        cells = " | ".join(str(p or "-") for p in places.values())
        print(f"| {query} | {len(found)} | {cells} | {'; '.join(x.split('  ')[0] for x in found[:4])} |")
    sr = search(ui, "super resolution", RANK_DEPTH)
    ui.key("Escape", "Escape", 27)
    video = [i for i, label in enumerate(sr, 1) if "video" in label.lower()]
    first_video = video[0] if video else len(sr) + 1
    for t in (LOADER, UPSCALER):
        place = rank(sr, names[t])
        check(
            place is not None and place < first_video,
            f"search 'super resolution': {names[t]} ({place}) before any video node ({video[:1] or 'none'})",
        )
    for query, t in (("psnr", COMPARE), ("compare", COMPARE)):
        place = table[query][t]
        check(place is not None and place <= 10, f"search {query!r}: {names[t]} in the first 10 ({place})")
    return table


def check_run(h, ui, shots: str | None) -> None:
    workflow = workflows()["compare_with_bicubic"]
    load_in_page(ui, workflow)
    (loader,), (comp,) = nodes(ui, LOADER), nodes(ui, COMPARE)
    ui.eval(f"{FOCUS_JS}({json.dumps([loader['id'], comp['id']])})")
    ui.wait_for(f"{NODE_JS}({json.dumps(LOADER)})[0].info?.text?.includes('channels')", timeout=60)
    (loader,) = nodes(ui, LOADER)
    info = loader["info"]
    check(
        "ATD" in info["text"] and info["scroll"] <= info["client"] + 1,
        f"Super Resolution Model Loader shows its info before any run, every line visible "
        f"({info['text'].count(chr(10)) + 1} lines, {info['scroll']}/{info['client']} px)",
    )
    widths = {LOADER: loader["size"][0], COMPARE: comp["size"][0]}
    r = queue_from_page(h, ui)
    check(
        r["status"] == "success",
        f"compare_with_bicubic ran from the page ({r['status']}, via {r.get('via')})",
    )
    time.sleep(2)
    (loader,), (comp,) = nodes(ui, LOADER), nodes(ui, COMPARE)
    ui.eval(f"{FOCUS_JS}({json.dumps([loader['id'], comp['id']])})")
    time.sleep(1.5)
    shot(ui, shots, "1_after_run")
    for node, key, what in (
        (loader, "info", "Super Resolution Model Loader info"),
        (comp, "report", "Compare report"),
    ):
        box = node[key]
        lines = box["text"].count("\n") + 1
        check(
            box["visible"] and box["scroll"] <= box["client"] + 1 and box["client"] >= 14 * min(lines, 12),
            f"{what}: all {lines} lines visible after the run ({box['scroll']} px of text, box {box['client']} px)",
        )
    for node, type_ in ((loader, LOADER), (comp, COMPARE)):
        check(
            node["size"][0] == widths[type_], f"{type_} kept its width ({widths[type_]} -> {node['size'][0]})"
        )
    check_slider(ui, comp["id"], shots)
    return loader["id"]


def check_slider(ui, node_id: int, shots: str | None) -> None:
    (comp,) = nodes(ui, COMPARE)
    s = comp["slider"]
    if not s or not s["rect"]:
        check(False, f"slider drawn after the run ({s})")
        return
    rect, pos = s["rect"], comp["pos"]

    def at(fx: float, fy: float = 0.5):
        p = [pos[0] + rect["x"] + rect["w"] * fx, pos[1] + rect["y"] + rect["h"] * fy]
        return ui.eval(f"{TO_PAGE_JS}({json.dumps(p)})")

    def state():
        return nodes(ui, COMPARE)[0]["slider"]

    above_image = ui.eval(f"{TO_PAGE_JS}({json.dumps([pos[0] + 20, pos[1] + rect['y'] - 8])})")
    off_node = ui.eval(f"{TO_PAGE_JS}({json.dumps([pos[0] - 60, pos[1] - 60])})")
    mouse(ui, "move", at(0.25))
    st = state()
    check(
        abs(st["split"] - 0.25) < 0.03 and not st["pinned"], f"hover moves the line (split {st['split']:.2f})"
    )
    mouse(ui, "move", at(0.02))
    mouse(ui, "move", above_image)
    st = state()
    check(
        abs(st["split"] - 0.5) < 1e-6,
        f"leaving the image returns a free line to the middle ({st['split']:.2f})",
    )
    mouse(ui, "click", at(0.3))
    st = state()
    check(st["pinned"] and abs(st["split"] - 0.3) < 0.03, f"a click pins the line ({st})")
    mouse(ui, "move", at(0.8))
    mouse(ui, "move", off_node)
    shot(ui, shots, "2_pinned")
    st = state()
    check(abs(st["split"] - 0.3) < 0.03, f"a pinned line stays on hover and leaving ({st['split']:.2f})")
    mouse(ui, "click", at(0.6))
    st = state()
    check(not st["pinned"] and abs(st["split"] - 0.6) < 0.03, f"a second click releases it ({st})")
    mouse(ui, "move", off_node)
    st = state()
    check(
        abs(st["split"] - 0.5) < 1e-6,
        f"leaving the node returns a free line to the middle ({st['split']:.2f})",
    )


def check_reload(h, ui, shots: str | None) -> None:
    ui._send("Page.reload")  # the page may ask "leave site?" about the unsaved graph: accept it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ui.call("Page.handleJavaScriptDialog", accept=True, timeout=5)
            break
        except ch.HarnessError:
            try:
                if ui.eval("document.readyState", timeout=3) in ("interactive", "complete"):
                    break
            except ch.HarnessError:
                pass
        time.sleep(0.5)
    time.sleep(2)
    ui.wait_app()
    try:
        ui.wait_for(f"{NODE_JS}({json.dumps(LOADER)})[0]?.info?.text?.includes('channels')", timeout=60)
        ok = True
    except ch.HarnessError:
        ok = False
    (loader,) = nodes(ui, LOADER) or [{"info": None}]
    check(
        ok,
        f"after a page reload Super Resolution Model Loader shows its info without a run ({(loader['info'] or {}).get('text', '')[:40]!r})",
    )
    r = queue_from_page(h, ui)
    time.sleep(2)
    (loader,) = nodes(ui, LOADER)
    check(
        r["status"] == "success" and "channels" in (loader["info"] or {}).get("text", ""),
        f"after a cached re-run the info is still there ({r['status']})",
    )
    shot(ui, shots, "3_after_reload_rerun")


def check_help(ui, shots: str | None) -> None:
    for type_ in (LOADER, UPSCALER, COMPARE):
        got = ui.eval(f"{HELP_JS}({json.dumps(type_)})", timeout=60)
        if "error" in got:
            check(False, f"{type_} help page opened in the side panel ({got['error']})")
            continue
        check(
            got["text"] > 500 and not got["wide"],
            f"{type_} help page fits the side panel ({got['width']} px, {got['tables']} tables, "
            f"wider elements: {got['wide'] or 'none'})",
        )
        shot(ui, shots, f"4_help_{type_}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shots", help="folder for screenshots")
    parser.add_argument(
        "--only", nargs="*", choices=("search", "ranks", "run", "help"), help="parts to check (default: all)"
    )
    args = parser.parse_args()
    parts = set(args.only or ("search", "ranks", "run", "help"))
    h = start()
    try:
        ch.nodes(h)
        version = ch._http(h, "GET", "/system_stats")[1]["system"].get("comfyui_version")
        print(f"host: ComfyUI {version} at {ch.comfyui_dir()}")
        with ch.ui_session(h, width=1600, height=1000, timeout=300) as ui:
            ui.wait_app()
            if "search" in parts:
                check_search(ui)
            if "ranks" in parts:
                check_ranks(ui, version)
            if "run" in parts:
                check_run(h, ui, args.shots)
                check_reload(h, ui, args.shots)
            if "help" in parts:
                check_help(ui, args.shots)
            check_console(ui)
    finally:
        ch.stop(h)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
