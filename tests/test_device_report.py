"""The device report's CPU quick run (what CI runs): every section is there, with real numbers.

The full run needs a GPU (``python -m benchmarks.device_report``); this runs the same code paths
on tiny sizes and reduced configs, in-process, and reads the markdown back.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys

import pytest

TITLES = {
    "environment": "Environment",
    "exactness": "Exactness",
    "precision": "Precision",
    "compiled": "Compiled",
    "speed": "Speed per tile",
    "end_to_end": "End to end",
    "oom": "Out of memory for real",
    "oom_device_blend": "Out of memory while blending on the device",
    "onnx": "ONNX runtimes",
    "run": "Run",
}
# The default run (no --variants), one per family. Every section:
CORE = ["RGT_x4", "DRCT_x4", "ATD_x4", "ATD_light_x4"]
# Measured lighter: a shorter speed measurement, not end to end
EXTRA = ["HAT_S_x4", "DAT_light_x4", "SwinIR_M_x4"]
VARIANTS = CORE + EXTRA
FAMILIES = {"RGT", "DRCT", "ATD", "HAT", "DAT", "SwinIR"}
# the compiled section: one variant per family
COMPILED = {"RGT": "RGT_S_x4", "DRCT": "DRCT_x4", "ATD": "ATD_light_x4", "HAT": "HAT_S_x4"}
COMPILED |= {"DAT": "DAT_light_x4", "SwinIR": "SwinIR_M_x4"}


def _section(report: str, title: str) -> str:
    """The text of the section whose heading starts with ``title``."""
    parts = report.split("\n## ")
    matches = [p for p in parts if p.startswith(title)]
    assert len(matches) == 1, f"section '{title}' missing or repeated"
    return matches[0]


def _rows(text: str) -> list[list[str]]:
    """Cells of every markdown table row (headers and separators included)."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def _number(cell: str) -> float:
    value = float(cell.split()[0])
    assert math.isfinite(value), cell
    return value


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    import torch

    from srt.benchmarks.device_report import main

    out = tmp_path_factory.mktemp("device_report") / "report.md"
    # A budget no CI machine reaches: sections must run, not be skipped. One thread: the tiny
    # models gain nothing from two, and on a shared runner two threads wait on each other.
    threads = torch.get_num_threads()
    try:
        text = main(
            ["--device", "cpu", "--quick", "--threads", "1", "--budget-s", "100000", "--out", str(out)]
        )
    finally:
        torch.set_num_threads(threads)
    assert out.read_text() == text
    return text


def test_every_section_ran(report):
    assert "Section failed" not in report
    assert "skipped" not in report.lower()
    run = _rows(_section(report, TITLES["run"]))
    statuses = {r[0]: r[1] for r in run[2:]}
    assert statuses == {key: "ok" for key in TITLES if key != "run"}
    assert "quick mode" in report  # the report says its numbers are smoke values
    # written in run order: the checks, then the compiled path, speed last
    headings = [line.removeprefix("## ") for line in report.splitlines() if line.startswith("## ")]
    order = [next(key for key, title in TITLES.items() if h.startswith(title)) for h in headings]
    assert order == ["environment", "exactness", "precision", "compiled", "oom", "oom_device_blend",
                     "end_to_end", "speed", "onnx", "run"]  # fmt: skip


def test_exactness_per_family(report):
    rows = _rows(_section(report, TITLES["exactness"]))[2:]
    assert {r[0] for r in rows} == FAMILIES
    assert {r[1] for r in rows} == set(VARIANTS)
    for variant in VARIANTS:
        mine = [r for r in rows if r[1] == variant]
        assert {r[3] for r in mine} == {"window multiple", "odd"}, variant
        for r in mine:
            assert _number(r[4]) < 1e-4 and r[6] == "ok", r


def test_precision_psnr(report):
    rows = {r[0]: r[1:] for r in _rows(_section(report, TITLES["precision"]))[2:]}
    assert set(rows) == {*VARIANTS, "ATD_light_x2 (trained asset)"}
    for name, (bf16, fp16, sp_bf16, sp_fp16) in rows.items():
        # the smoke report's reduced configs, official init, measured bf16 53-62 / fp16 60-79 dB;
        # floors at the low end minus ~4 dB (the README's own lowest figures: RGT 41 / 59 dB)
        assert _number(bf16) >= 49.0 and _number(fp16) >= 56.0, (name, bf16, fp16)
        for cell in (sp_bf16, sp_fp16):  # spandrel: a PSNR or its recorded crash
            assert cell.startswith("crash: ") or _number(cell) > 0, (name, cell)


def test_compiled_every_family_whole(report):
    """CPU: fp32, dynamo's eager backend: every family traces as one graph, no breaks, same output."""
    text = _section(report, TITLES["compiled"])
    rows = _rows(text)
    assert rows[0][0] == "fp32: family" and "bf16: family" not in text  # half precision: CUDA only
    rows = {(r[1], r[2]): r for r in rows[2:]}
    assert {v for v, _ in rows} == set(COMPILED.values())
    for family, variant in COMPILED.items():
        eager, compiled, graphs = (rows[(variant, path)] for path in ("eager", "compiled", "CUDA graphs"))
        assert eager[0] == compiled[0] == family
        assert _number(eager[3]) > 0 and _number(compiled[3]) > 0, (eager, compiled)
        assert _number(compiled[5]) >= 0 and _number(compiled[6]) < 1e-4, compiled  # compile s, max abs
        assert (compiled[7], compiled[8]) == ("1", "0"), compiled  # one graph, no break
        assert compiled[9].startswith("n/a (CPU)"), compiled  # no host-sync check on the CPU
        assert graphs[3] == "n/a (CPU)", graphs
    assert "`eager` backend" in text  # says the CPU times are not inductor's


def test_speed_has_numbers(report):
    text = _section(report, TITLES["speed"])
    rows = _rows(text)
    flops = [r for r in rows if len(r) == 5 and r[0] in VARIANTS]
    assert {r[0] for r in flops} == set(VARIANTS)
    assert all(_number(r[2]) > 0 for r in flops)  # counted FLOPs of the official code
    timed = [r for r in rows if len(r) == 8 and r[0] in VARIANTS]
    for variant in VARIANTS:
        for impl in ("spandrel fp32", "ours fp32", "ours bf16", "ours fp16"):
            row = [r for r in timed if r[0] == variant and r[1] == impl]
            assert len(row) == 1, (variant, impl)  # one tile size (32 px in quick mode)
            assert _number(row[0][2]) > 0 and _number(row[0][3]) > 0 and _number(row[0][4]) > 0, row
        spandrel_bf16 = [r for r in timed if r[0] == variant and r[1] == "spandrel bf16"]
        assert spandrel_bf16 and all(r[2].startswith("crash: ") or _number(r[2]) > 0 for r in spandrel_bf16)
    sizes = {r[0].split(":")[0] for r in rows if r[0].endswith(": variant")}
    assert sizes == {"32px"}
    assert "Measured lighter" in text and all(v in text.split("Measured lighter")[1] for v in EXTRA)


def test_end_to_end_both_paths(report):
    text = _section(report, TITLES["end_to_end"])
    rows = {r[0]: r for r in _rows(text)[2:]}
    assert set(rows) == set(CORE)
    assert all(v in text.split("Not run here")[1] for v in EXTRA)  # the lighter ones, said so
    for r in rows.values():
        assert _number(r[1]) > 0 and _number(r[4]) > 0 and _number(r[8]) > 20, r


def test_out_of_memory_backs_off_and_matches(report):
    text = _section(report, TITLES["oom"])
    assert "**Result: matches**" in text
    assert "simulated on CPU" in text  # honest about how the error came about
    capped = next(r for r in _rows(text) if r[0] == "capped, auto tile")
    assert int(capped[3]) >= 1


def test_out_of_memory_while_blending_finishes_and_matches(report):
    text = _section(report, TITLES["oom_device_blend"])
    assert "**Result: finished, matches**" in text
    rows = {r[0]: r for r in _rows(text)[2:]}
    forced, clean = (
        rows["injected out of memory, auto tile"],
        next(r for k, r in rows.items() if k.startswith("no error")),
    )
    assert int(forced[4]) == 1 and int(clean[4]) == 0  # one back-off, and none without the error
    assert forced[1] == clean[1] == "cpu"  # the CPU run blends on the CPU (on CUDA: the GPU)
    assert forced[2] == clean[2] and forced[5] == clean[5]  # same tiles after the back-off


def test_onnx_runtimes_absent_on_the_cpu(report):
    """No CUDA here: onnxruntime's GPU providers and TensorRT are absent; the section says so, ends
    ok and measures nothing."""
    text = _section(report, TITLES["onnx"])
    assert "Absent on this device:" in text and "onnxruntime-CUDA" in text and "TensorRT" in text
    assert "_Not measured: no ONNX runtime for this device imported" in text
    assert not _rows(text)


def test_onnx_runtimes_without_the_packages(monkeypatch):
    """A device without onnxruntime, onnx or tensorrt (the usual device image): one line naming
    them, nothing raised, even on a CUDA context."""
    import importlib.util
    from types import SimpleNamespace

    from srt.benchmarks import device_export
    from srt.benchmarks.device_run import Section

    absent = {"onnx", "onnxscript", "onnxruntime", "tensorrt"}
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a)
    )
    sec = Section("onnx", "ONNX runtimes")
    device_export.onnx_runtimes(SimpleNamespace(cuda=True, quick=True), sec)
    text = "\n".join(sec.render())
    for name in ("`onnx`", "`onnxscript`", "onnxruntime absent", "`tensorrt` absent"):
        assert name in text, (name, text)
    assert "_Not measured" in text


def test_named_variants_get_every_section():
    """``--variants`` naming a HAT/DAT/SwinIR variant gives it the full treatment (no run needed)."""
    from srt.benchmarks.device_models import DEFAULT_VARIANTS, EXTRA_VARIANTS
    from srt.benchmarks.device_report import Context, parse_args

    assert DEFAULT_VARIANTS == VARIANTS
    default = Context(parse_args(["--device", "cpu"]))
    assert default.args.variants == VARIANTS and default.args.speed_tiles == [512]
    assert default.args.budget_s == 330 and default.args.compile_budget_s == 180  # ~6 min on an H200
    quick = parse_args(["--device", "cpu", "--quick"])
    assert quick.speed_tiles == [32] and quick.budget_s > default.args.budget_s  # a smoke run loses nothing
    assert [v for v in VARIANTS if default.light(v)] == EXTRA
    assert set(EXTRA) <= set(EXTRA_VARIANTS)
    named = Context(parse_args(["--device", "cpu", "--variants", "HAT_x4", "RGT_x4"]))
    assert named.args.variants == ["HAT_x4", "RGT_x4"] and not named.light("HAT_x4")


KILLED_RUN = """
import os, signal, sys
from benchmarks import device_report

def done(ctx, sec):
    sec.table(["what"]).add(sec.key + " finished")

def killed(ctx, sec):
    sec.note("half way")
    os.kill(os.getpid(), signal.SIGKILL)  # as a timeout kills the run: no cleanup

device_report.main(["--device", "cpu", "--quick", "--out", sys.argv[1]], sections={
    "environment": ("Environment", done), "exactness": ("Exactness", done),
    "compiled": ("Compiled", killed), "speed": ("Speed per tile", done)})
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX kill")
def test_a_killed_run_leaves_every_finished_section(tmp_path):
    """Each section reaches the file (and stdout) as it finishes: a run killed half way keeps them."""
    from srt.benchmarks.device_models import REPO

    out = tmp_path / "report.md"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(out)], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("# Device report") and "Command:" in text
    assert "environment finished" in text and "exactness finished" in text
    assert "_Section ok in" in text  # each finished section says so
    assert "half way" not in text and "speed finished" not in text and "## Run" not in text
    assert "exactness finished" in proc.stdout
