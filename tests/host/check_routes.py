"""Real-host check of ``GET /srt/model_info`` with hostile names (not collected by pytest; needs a host):

    SRT_HOST_HOME=~/.cache/srt-host      python tests/host/check_routes.py   # ComfyUI 0.3.64
    SRT_HOST_HOME=~/.cache/srt-host-new  python tests/host/check_routes.py   # ComfyUI 0.33

A real checkpoint lies outside the model folders (in the server's workdir); ``../`` paths to it,
its absolute path, ``/etc/passwd``, a 100 kB name, a 2 000-character name and HTML each get a 4xx
(the 100 kB one may be refused by aiohttp itself, before the pack) whose text neither describes
that checkpoint nor echoes the name; a name not installed gets 404; a listed one 200 with its
description. tests/test_routes.py checks the same on the stub host in CI. Prints one line per
check; exit code 1 if any failed.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.parse

from check_examples import REPO, STAND_IN, ch, check, results

LISTED = "listed_model.safetensors"
HIDDEN = "outside_model.safetensors"  # a real checkpoint outside every model folder


def get(h, name: str) -> tuple[int, object]:
    return ch._http(h, "GET", "/srt/model_info?name=" + urllib.parse.quote(name, safe=""), timeout=60)


def hostile(outside: str) -> dict[str, str]:
    return {
        "parent to a real checkpoint": f"../../outside/{HIDDEN}",  # from models/upscale_models
        "parent, deeper": f"../../../../../../{outside.lstrip('/')}/{HIDDEN}",
        "parent inside a name": f"sub/../../../outside/{HIDDEN}",
        "../../etc/passwd": "../../etc/passwd",
        "absolute path to a real checkpoint": os.path.join(outside, HIDDEN),
        "absolute /etc/passwd": "/etc/passwd",
        "100 kB name": "a" * 100_000 + ".safetensors",
        "2000-character name": "b" * 2000 + ".safetensors",
        "HTML": '<img src=x onerror="alert(1)">.safetensors',
        "script": "<script>alert(1)</script>",
    }


def main() -> int:
    h = ch.start([REPO], models={"upscale_models": [linked_model()]})
    try:
        version = ch._http(h, "GET", "/system_stats")[1]["system"].get("comfyui_version")
        print(f"host: ComfyUI {version} at {ch.comfyui_dir()}")
        check(not ch.import_errors(h) and "SRT_LoadModel" in ch.nodes(h), "pack imports clean")
        outside = os.path.join(h.workdir, "outside")
        os.makedirs(outside, exist_ok=True)
        shutil.copy(STAND_IN, os.path.join(outside, HIDDEN))
        status, body = get(h, LISTED)
        check(status == 200 and body["ok"] and "ATD" in body["text"], f"listed model: {status} {body}")
        status, body = get(h, "nope.safetensors")
        check(
            status == 404 and not body["ok"] and "nope.safetensors" in body["text"],
            f"model not installed: {status} {str(body)[:160]}",
        )
        for what, name in hostile(outside).items():
            status, body = get(h, name)
            text = body.get("text", "") if isinstance(body, dict) else str(body)[:300]
            ok = 400 <= status < 500 and "ATD" not in text and name not in text and "<" not in text
            if isinstance(body, dict):  # answered by the pack, not by aiohttp's request-line limit
                ok = ok and body.get("ok") is False and text.startswith("Bad request")
            check(ok, f"{what}: {status} {text[:160]}")
        log = h.log_text()
        check(HIDDEN not in log, "the server log never mentions the checkpoint outside the folders")
    finally:
        ch.stop(h)
    failed = [what for ok, what in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


def linked_model() -> str:
    os.makedirs("/tmp/srt_route_check", exist_ok=True)
    link = os.path.join("/tmp/srt_route_check", LISTED)
    if not os.path.lexists(link):
        os.symlink(STAND_IN, link)
    return link


if __name__ == "__main__":
    sys.exit(main())
