"""The pack's HTTP route, for its front end (``web/srt_load_model.js``).

``GET /srt/model_info?name=<model_name>`` -> ``{"ok": bool, "text": str}``: what Load SR Model
shows for that file (:func:`.load_model.model_info`), so the node can show it as soon as a file
is picked or a workflow is opened, without a run (ComfyUI answers a re-run of an unchanged loader
from its cache, and older hosts then send no ui text). The file is read through the loader's
cache on a worker thread, so a later run of the node reuses it and the server never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from .load_model import model_info

log = logging.getLogger(__name__)

MODEL_INFO = "/srt/model_info"
_registered = False


async def handle_model_info(request):
    from aiohttp import web

    name = request.rel_url.query.get("name", "")
    if not name:
        return web.json_response({"ok": False, "text": "no model name given (?name=<file>)"}, status=400)
    ok, text = await asyncio.get_running_loop().run_in_executor(None, model_info, name)
    return web.json_response({"ok": ok, "text": text})


def register() -> None:
    """Add the route to ComfyUI's server once (no-op without a server, e.g. in scripts)."""
    global _registered
    if _registered:
        return
    # ComfyUI's server module, imported by its main.py before custom nodes load; looked up rather
    # than imported, so a script that imports the nodes without a server (or a foreign module
    # named "server") is left alone
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None or not hasattr(instance, "routes"):
        return
    instance.routes.get(MODEL_INFO)(handle_model_info)
    _registered = True
    log.debug("[SR Transformers] route %s registered", MODEL_INFO)
