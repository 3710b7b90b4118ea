"""The command line answers a bad argument or a missing file before ``import torch`` (seconds on a
fresh machine), and its argument choices agree with the engine's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from srt.cli import choices
from srt.engine.comparison import MODES
from srt.engine.host import Settings
from srt.engine.metrics import CHANNELS
from srt.engine.precision import PRECISIONS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import sys
sys.path.insert(0, {repo!r})
from cli import main
code = main({argv!r})
print("EXIT", code, "TORCH", "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["upscale", "missing.png", "-o", "out.png"],
        ["upscale", "missing_dir", "-o", "out", "--scale", "4"],
        ["upscale", "a.png", "-o", "out.png", "--scale", "3"],
        ["upscale", "a.png", "-o", "out.png", "--precision", "fp8"],
        ["compare", "a.png", "missing_b.png"],
    ],
    ids=["missing-file", "missing-folder", "bad-scale", "bad-precision", "compare-missing"],
)
def test_bad_arguments_fail_before_torch_is_imported(argv, tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(repo=REPO, argv=argv)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "EXIT 2 TORCH False" in out.stdout, (out.stdout, out.stderr)
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), out.stderr


def test_the_choices_agree_with_the_engine():
    assert choices.PRECISIONS == PRECISIONS
    assert choices.MODES == MODES
    assert choices.CHANNELS == CHANNELS
    assert choices.DEFAULT_OVERLAP == Settings().overlap
