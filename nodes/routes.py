"""The pack's HTTP route, for its front end (``web/srt_load_model.js``).

``GET /srt/model_info?name=<model_name>`` -> ``{"ok": bool, "text": str}``: what Super Resolution Model Loader
shows for that file (:func:`.load_model.model_info`), so the node can show it as soon as a file
is picked or a workflow is opened, without a run (ComfyUI answers a re-run of an unchanged loader
from its cache, and older hosts then send no ui text). The file is read through the loader's
cache on a worker thread, so a later run of the node reuses it and the event loop is not held up.

Only a name the loader lists (a file in the model folders) is read: anything else is answered
400 (no name, longer than ``MAX_NAME``, an absolute path, a ``..`` part, markup or control
characters; the name is not echoed) or 404 (a plain name that is not installed) before any file
is touched.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys

from .load_model import model_info
from .paths import model_names, where_to_put

log = logging.getLogger(__name__)

MODEL_INFO = "/srt/model_info"
MAX_NAME = 1024  # characters; a listed name is a relative path under a model folder
_BAD_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>"|?*]')
_DRIVE = re.compile(r"^[A-Za-z]:")
_registered = False


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a checkpoint name as the loader lists them, or None."""
    if not name:
        return "no model name given (?name=<file>)"
    if len(name) > MAX_NAME:
        return f"the model name is {len(name)} characters long; names are at most {MAX_NAME}"
    if _BAD_CHARACTERS.search(name):
        return "the model name has markup or control characters (angle brackets, quotes, |, ?, *), as no checkpoint name does"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return (
            "the model name is an absolute path; give the file name as Super Resolution Model Loader lists it"
        )
    if ".." in re.split(r"[\\/]", name):
        return "the model name leaves the model folders ('..'); give the file name as Super Resolution Model Loader lists it"
    return None


def answer(name: str) -> tuple[int, dict]:
    """``(HTTP status, body)`` for ``?name=``: 400 for a malformed name, 404 for one not in the
    model folders, else 200 and :func:`.load_model.model_info` (which reads the file)."""
    problem = name_problem(name)
    if problem is not None:
        return 400, {"ok": False, "text": f"Bad request: {problem}."}
    if name not in model_names():
        return 404, {"ok": False, "text": f"Cannot load {name}: no such checkpoint. {where_to_put()}"}
    ok, text = model_info(name)
    return 200, {"ok": ok, "text": text}


async def handle_model_info(request):
    from aiohttp import web

    name = request.rel_url.query.get("name", "")
    status, body = await asyncio.get_running_loop().run_in_executor(None, answer, name)
    return web.json_response(body, status=status)


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
