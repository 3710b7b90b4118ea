"""The device report's CPU quick run (what CI runs): every section is there, with real numbers.

The full run needs a GPU (``python -m benchmarks.device_report``); this runs the same code paths
on tiny sizes and reduced configs, in-process, and reads the markdown back.
"""

from __future__ import annotations

import math

import pytest

TITLES = {
    "environment": "Environment",
    "exactness": "Exactness",
    "precision": "Precision",
    "speed": "Speed per tile",
    "end_to_end": "End to end",
    "oom": "Out of memory for real",
    "oom_device_blend": "Out of memory while blending on the device",
    "run": "Run",
}
# Every section, both tile sizes
CORE = ["RGT_x4", "RGT_S_x4", "DRCT_x4", "DRCT_L_x4", "ATD_x4", "ATD_light_x4"]
# Measured lighter by default: speed at the larger tile only, not end to end
EXTRA = ["HAT_S_x4", "HAT_x4", "HAT_L_x4", "DAT_x4", "DAT_light_x4", "DAT_2_x4"]
EXTRA += ["SwinIR_M_x4", "SwinIR_S_x4", "SwinIR_L_real_x4"]
VARIANTS = CORE + EXTRA
# exactness and precision: one per family (+ ATD-light's upsampler)
EXACT = {"RGT": "RGT_x4", "DRCT": "DRCT_x4", "ATD": "ATD_x4", "HAT": "HAT_x4", "DAT": "DAT_x4"}
EXACT |= {"SwinIR": "SwinIR_M_x4"}


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


def test_exactness_per_family(report):
    rows = _rows(_section(report, TITLES["exactness"]))[2:]
    for family, variant in EXACT.items():
        mine = [r for r in rows if r[0] == family]
        assert {r[3] for r in mine} == {"window multiple", "odd"}, family
        assert variant in {r[1] for r in mine}, variant
        for r in mine:
            assert _number(r[4]) < 1e-4 and r[6] == "ok", r


def test_precision_psnr(report):
    rows = {r[0]: r[1:] for r in _rows(_section(report, TITLES["precision"]))[2:]}
    assert {*EXACT.values(), "ATD_light_x4", "ATD_light_x2 (trained asset)"} <= set(rows)
    for name, (bf16, fp16, sp_bf16, sp_fp16) in rows.items():
        # the smoke report's reduced configs, official init, measured bf16 53-62 / fp16 60-79 dB;
        # floors at the low end minus ~4 dB (the README's own lowest figures: RGT 41 / 59 dB)
        assert _number(bf16) >= 49.0 and _number(fp16) >= 56.0, (name, bf16, fp16)
        for cell in (sp_bf16, sp_fp16):  # spandrel: a PSNR or its recorded crash
            assert cell.startswith("crash: ") or _number(cell) > 0, (name, cell)


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
            assert len(row) == (2 if variant in CORE else 1), (variant, impl)  # tile sizes
            for r in row:
                assert _number(r[2]) > 0 and _number(r[3]) > 0 and _number(r[4]) > 0, r
        spandrel_bf16 = [r for r in timed if r[0] == variant and r[1] == "spandrel bf16"]
        assert spandrel_bf16 and all(r[2].startswith("crash: ") or _number(r[2]) > 0 for r in spandrel_bf16)
    # the lighter ones at the larger tile (32 px in quick mode) and said so
    sizes = {r[0].split(":")[0] for r in rows if r[0].endswith(": variant")}
    assert sizes == {"16px", "32px"}
    larger = text.split("| 32px: variant")[1]
    assert all(f"| {v} |" in larger for v in EXTRA)
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


def test_named_variants_get_every_section():
    """``--variants`` naming a HAT/DAT/SwinIR variant gives it the full treatment (no run needed)."""
    from srt.benchmarks.device_models import VARIANTS as MODEL_VARIANTS
    from srt.benchmarks.device_report import Context, parse_args

    assert MODEL_VARIANTS == VARIANTS
    default = Context(parse_args(["--device", "cpu"]))
    assert default.args.variants == VARIANTS
    assert [v for v in VARIANTS if default.light(v)] == EXTRA
    named = Context(parse_args(["--device", "cpu", "--variants", "HAT_x4", "RGT_x4"]))
    assert named.args.variants == ["HAT_x4", "RGT_x4"] and not named.light("HAT_x4")
