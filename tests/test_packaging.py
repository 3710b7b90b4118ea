"""Registry hygiene (ComfyUI-Manager, Comfy Registry): licence, classifiers, what `.comfyignore`
keeps out of the published package. `comfy node validate` itself needs comfy-cli (see README)."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys

import project_files
from project_files import pyproject

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what comfy-cli accepts as accelerator ("Environment :: ...") and OS classifiers
ACCELERATORS = {
    "GPU :: NVIDIA CUDA",
    "GPU :: AMD ROCm",
    "GPU :: Intel Arc",
    "NPU :: Huawei Ascend",
    "GPU :: Apple Metal",
}
OS_PREFIXES = ("Microsoft", "POSIX", "MacOS", "OS Independent")


def _ignore_patterns() -> list[str]:
    with open(os.path.join(REPO, ".comfyignore"), encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]


def _ignored(rel_path: str, patterns: list[str]) -> bool:
    """gitwildmatch for the anchored patterns we use: '/dir/' (everything below) and '/file'."""
    return any(rel_path.startswith(p[1:]) if p.endswith("/") else rel_path == p[1:] for p in patterns)


def test_license_is_mit_and_declared():
    project = pyproject()["project"]
    assert project["license"] == {"file": "LICENSE"}
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as fh:
        text = fh.read()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_registry_classifiers():
    classifiers = pyproject()["project"]["classifiers"]
    assert "Operating System :: OS Independent" in classifiers
    assert "Environment :: GPU :: NVIDIA CUDA" in classifiers
    # comfy-cli drops *all* accelerator / OS information if one such classifier is unknown
    for c in classifiers:
        if c.startswith("Environment ::"):
            assert c.removeprefix("Environment :: ") in ACCELERATORS, c
        if c.startswith("Operating System :: "):
            assert c.removeprefix("Operating System :: ").startswith(OS_PREFIXES), c


def test_comfyignore_keeps_development_files_out():
    patterns = _ignore_patterns()
    assert all(p.startswith("/") for p in patterns), (
        "anchor every pattern (gitwildmatch matches at any depth)"
    )
    for dev in ("tests/test_nodes.py", "tests/assets/x.safetensors", "benchmarks/common.py", ".ci/run"):
        assert _ignored(dev, patterns), dev
    shipped = (
        "__init__.py",
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "requirements.txt",
        "nodes/paths.py",
        "arch/loader.py",
        "engine/runner.py",
        "web/srt_compare.js",
        "weights/README.md",
        "weights/SRT_ATD-tiny_x4.safetensors",
        "example_workflows/upscale_x4.json",
    )
    for path in shipped:
        assert not _ignored(path, patterns), path


def test_every_runtime_file_ships():
    """No file of the folders the pack runs from is ignored (the files on disk: a checkout without
    git, or a copy, is checked too)."""
    patterns = _ignore_patterns()
    runtime = []
    for folder in ("nodes", "arch", "engine", "web", "cli", "weights", "example_workflows"):
        for root, dirs, files in os.walk(os.path.join(REPO, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            runtime += [os.path.relpath(os.path.join(root, f), REPO).replace(os.sep, "/") for f in files]
    assert {"nodes/paths.py", "engine/runner.py", "web/srt_compare.js"} <= set(runtime)
    assert not [p for p in runtime if _ignored(p, patterns)]


def test_the_oldest_declared_python_reads_the_project_file(monkeypatch):
    """``requires-python`` allows 3.10, which has no ``tomllib``: the tests' reader then uses the
    ``tomli`` backport, which requirements-dev.txt installs on 3.10 only."""
    assert pyproject()["project"]["requires-python"] == ">=3.10"
    with open(os.path.join(REPO, "requirements-dev.txt"), encoding="utf-8") as fh:
        lines = [ln.split("#")[0].strip() for ln in fh]
    assert 'tomli>=1.1; python_version < "3.11"' in lines
    # Python 3.10 as far as imports go: no tomllib; the backport (played by the parser this
    # interpreter has, tomllib or tomli: the same code) must be the one the reader picks
    parser = project_files.toml_parser
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", parser)
    spec = importlib.util.spec_from_file_location("project_files_py310", project_files.__file__)
    on_310 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(on_310)
    assert on_310.toml_parser is parser
    assert on_310.pyproject()["project"]["name"] == "comfyui-sr-transformers"


def test_only_the_reader_imports_tomllib():
    """Every other file reads pyproject.toml through ``project_files.pyproject`` (a direct
    ``import tomllib`` fails on Python 3.10)."""
    offenders = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path == project_files.__file__:
                continue
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                if "tomllib" in names:
                    offenders.append(f"{os.path.relpath(path, REPO)}:{node.lineno}")
    assert not offenders, offenders


def test_no_made_up_address_and_no_empty_registry_field():
    """Messages point at the README shipped in the pack; pyproject names no repository it cannot
    vouch for (the publisher adds its own) and leaves no registry field empty."""
    project = pyproject()
    assert "urls" not in project["project"]
    assert all(str(value).strip() for value in project["tool"]["comfy"].values()), project["tool"]["comfy"]
    with_address = []
    for folder in ("nodes", "arch", "engine", "cli", "web"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if name.endswith((".py", ".js", ".md", ".html")):
                    with open(os.path.join(root, name), encoding="utf-8") as fh:
                        if "github.com/sr-transformers" in fh.read():
                            with_address.append(name)
    assert not with_address


def test_every_family_is_named_where_users_read_the_pack():
    """The registry's description and display name, and the package's first docstring, name every
    family we implement (they said "RGT, DRCT and ATD" long after HAT, DAT and SwinIR landed)."""
    families = ("RGT", "DRCT", "ATD", "HAT", "DAT", "SwinIR")
    project = pyproject()
    with open(os.path.join(REPO, "__init__.py"), encoding="utf-8") as fh:
        docstring = ast.get_docstring(ast.parse(fh.read())) or ""
    texts = {
        "description": project["project"]["description"],
        "DisplayName": project["tool"]["comfy"]["DisplayName"],
        "__init__.py docstring": docstring.splitlines()[0],
    }
    for where, text in texts.items():
        missing = [f for f in families if f not in text]
        assert not missing, (where, missing)
