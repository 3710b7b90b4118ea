"""Registry hygiene (ComfyUI-Manager, Comfy Registry): licence, classifiers, what `.comfyignore`
keeps out of the published package. `comfy node validate` itself needs comfy-cli (see README)."""

from __future__ import annotations

import os
import subprocess

import tomllib

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


def _pyproject() -> dict:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)


def _ignore_patterns() -> list[str]:
    with open(os.path.join(REPO, ".comfyignore"), encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]


def _ignored(rel_path: str, patterns: list[str]) -> bool:
    """gitwildmatch for the anchored patterns we use: '/dir/' (everything below) and '/file'."""
    return any(rel_path.startswith(p[1:]) if p.endswith("/") else rel_path == p[1:] for p in patterns)


def test_license_is_mit_and_declared():
    project = _pyproject()["project"]
    assert project["license"] == {"file": "LICENSE"}
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as fh:
        text = fh.read()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_registry_classifiers():
    classifiers = _pyproject()["project"]["classifiers"]
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
    """Of the tracked files, only development ones are ignored (when git is available)."""
    try:
        tracked = subprocess.run(
            ["git", "-C", REPO, "ls-files"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return
    patterns = _ignore_patterns()
    runtime = ("nodes/", "arch/", "engine/", "web/", "cli/", "weights/", "example_workflows/")
    assert not [p for p in tracked if p.startswith(runtime) and _ignored(p, patterns)]
