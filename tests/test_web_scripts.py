"""The pack's front-end scripts use only the front end's public modules.

The ComfyUI front end exposes ``scripts/app.js`` and ``scripts/api.js`` to extensions; every other
``scripts/*.js`` is a shim of an internal module that prints "[ComfyUI Notice] ... is an internal
module, not part of the public API" when imported and may disappear in a later front end (then the
import throws and the whole script is lost). ``tests/host/check_frontend.py`` fails on that notice
in a real page; this test catches the import before it gets there.
"""

from __future__ import annotations

import os
import re

import pytest
from project_files import REPO

WEB = os.path.join(REPO, "web")
PUBLIC = {"../../scripts/app.js", "../../scripts/api.js"}
SCRIPTS = sorted(f for f in os.listdir(WEB) if f.endswith(".js"))
# static `import ... from "x"`, bare `import "x"`, and dynamic `import("x")`
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["'`]([^"'`]+)["'`]""")


def imports(source: str) -> list[str]:
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", source, flags=re.S)  # comments may mention modules
    return IMPORT.findall(code)


def test_import_pattern_sees_every_kind_of_import():
    source = """import { app } from "../../scripts/app.js";
    import "../../scripts/ui.js";
    const { ComfyWidgets } = await import("../../scripts/widgets.js");
    // import { x } from "../../scripts/utils.js";  (a comment)
    """
    assert imports(source) == ["../../scripts/app.js", "../../scripts/ui.js", "../../scripts/widgets.js"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_import_only_public_modules_and_each_other(name):
    with open(os.path.join(WEB, name), encoding="utf-8") as fh:
        found = imports(fh.read())
    local = {f"./{s}" for s in SCRIPTS}
    bad = [m for m in found if m not in PUBLIC | local]
    assert not bad, f"web/{name} imports {bad}: only {sorted(PUBLIC)} and the pack's own scripts"


def test_every_script_is_checked():
    assert {"srt_compare.js", "srt_load_model.js", "srt_text_box.js"} <= set(SCRIPTS)
