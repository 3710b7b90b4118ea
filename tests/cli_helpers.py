"""Helpers the command-line tests share: a tiny model (the node tests use it too), small images, an
in-process run."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from srt.cli import main
from srt.cli.resume import RECORD_NAME


def compact_checkpoint(folder: pathlib.Path) -> str:
    """A tiny spandrel Compact x2 checkpoint in ``folder`` (fast on any CPU)."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")
    path = folder / "compact_x2.safetensors"
    save_file(net.state_dict(), str(path))
    return str(path)


def rgb(path, h=20, w=24, channels=3, seed=0) -> str:
    """A random 8-bit image file (its format from the extension)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, channels), dtype=np.uint8).squeeze()).save(path)
    return str(path)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``python -m cli *argv`` in-process: exit code, stdout, stderr."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, name: str) -> None:
    """``err`` is one ``error: ...`` line naming ``name``, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], err
    assert "Traceback" not in err


def folder_files(folder) -> list[str]:
    """The files in an output folder, sorted, without the job record a folder run keeps there."""
    return sorted(name for name in os.listdir(folder) if name != RECORD_NAME)
