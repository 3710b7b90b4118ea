"""House rules that ComfyUI punishes at run time, checked statically."""

from __future__ import annotations

import ast
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACK_DIRS = ("arch", "engine", "nodes")
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "server", "execution", "latent_preview"}
COMFY_OWNED = {"nodes", "utils", "server", "app", "main"}


def _py_files(*dirs: str) -> list[pathlib.Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts)


def _absolute_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_root_init_imports_nothing_heavy_at_module_level():
    tree = ast.parse((REPO / "__init__.py").read_text())
    top_imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert top_imports == [], "the entry point must stay import-light (import inside comfy_entrypoint)"


@pytest.mark.parametrize("path", _py_files("arch", "engine"), ids=lambda p: str(p.relative_to(REPO)))
def test_models_and_engine_do_not_import_the_host(path):
    assert not (_absolute_imports(path) & HOST_MODULES), f"{path}: only nodes/ may import ComfyUI"


@pytest.mark.parametrize("path", _py_files(*PACK_DIRS), ids=lambda p: str(p.relative_to(REPO)))
def test_pack_never_imports_comfyui_owned_top_level_names(path):
    assert not (_absolute_imports(path) & COMFY_OWNED), f"{path}: import our subpackages relatively"


def test_pack_shape():
    for name in (
        "__init__.py",
        "arch",
        "engine",
        "nodes",
        "weights/README.md",
        "web",
        "tests",
        "pyproject.toml",
        "requirements.txt",
        "README.md",
    ):
        assert os.path.exists(REPO / name), name
    assert "torch==" not in (REPO / "requirements.txt").read_text()
