"""House rules that ComfyUI punishes at run time, checked statically."""

from __future__ import annotations

import ast
import importlib
import os
import pathlib
import re

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


FAMILY_NAME = re.compile(r"rgt|drct|atd|nhs2828", re.IGNORECASE)


def _code_words(path: pathlib.Path) -> set[str]:
    """Identifiers and string constants of ``path`` (docstrings, i.e. prose, left out)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and (body := node.body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    }
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.add(node.value)
    return words


@pytest.mark.parametrize("path", _py_files("engine"), ids=lambda p: str(p.relative_to(REPO)))
def test_engine_names_no_family(path):
    """The engine asks the model (working set, tile multiple, caches); it never matches a family."""
    named = sorted(w for w in _code_words(path) if FAMILY_NAME.search(w))
    assert not named, f"{path.relative_to(REPO)} names architecture families: {named}"


@pytest.mark.parametrize("path", _py_files("arch"), ids=lambda p: str(p.relative_to(REPO)))
def test_arch_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 300, f"{path.relative_to(REPO)} has {lines} lines: split it by concept"


def test_every_family_has_the_same_shape():
    """config.py (frozen dataclass + read_config), the model, the detector, the engine contract."""
    import dataclasses

    from srt.arch import OUR_ARCHITECTURES
    from srt.arch.common.config import ModelConfig
    from srt.arch.common.model import SRModel

    for arch in OUR_ARCHITECTURES:
        package = type(arch).__module__
        config_module = importlib.import_module(package + ".config")
        assert config_module.read_config is type(arch).read_config, package
        model_class = arch.model_class
        assert issubclass(model_class, SRModel), package
        for method in ("working_set_per_pixel", "preferred_tile_multiple"):
            assert getattr(model_class, method) is not getattr(SRModel, method), (package, method)
        config_classes = [
            c for c in vars(config_module).values() if isinstance(c, type) and issubclass(c, ModelConfig)
        ]
        assert any(c is not ModelConfig and c.__dataclass_params__.frozen for c in config_classes), package
        assert all(dataclasses.is_dataclass(c) for c in config_classes)


def test_registry_and_loader_do_not_import_each_other():
    registry = _absolute_or_relative_imports(REPO / "arch" / "registry.py")
    loader = _absolute_or_relative_imports(REPO / "arch" / "loader.py")
    assert "loader" not in registry and "registry" in loader


def _absolute_or_relative_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[-1])
        elif isinstance(node, ast.ImportFrom):
            names |= {a.name for a in node.names}
    return names


def test_the_checkout_is_registered_as_srt_in_one_place():
    """Tests, benchmarks, training and the command line all call ``cli.register_pack``: one
    function makes the package object whose ``__path__`` is the checkout."""
    makers = [
        str(p.relative_to(REPO))
        for p in _py_files("arch", "engine", "nodes", "cli", "tests", "benchmarks", "training")
        if re.search(r"__path__ = \[[^\]\s]", p.read_text())
    ]
    assert makers == ["cli/__init__.py"]
