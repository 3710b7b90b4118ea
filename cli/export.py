"""``export``: a checkpoint as an ONNX file for onnxruntime, TensorRT and chaiNNer (:mod:`..arch.export`).

Answered before anything heavy loads: a missing ONNX package (one line with the pip command), an
output that is not ``.onnx`` or exists without ``--overwrite``, an unknown model. Exit codes: 0
written; 2 bad arguments or input (missing package, unknown model, an architecture or precision
that does not export: nothing written); 1 our own implementation failed to export (a bug: report
it).
"""

from __future__ import annotations

import os
from typing import TextIO

from .errors import PARTIAL, USAGE, CliError

EXPORT_REQUIREMENTS = "requirements-export.txt"
EXPORT_PACKAGES = ("onnx", "onnxscript")  # arch.export.EXPORT_PACKAGES, repeated to stay torch-free here


def check_output(path: str, overwrite: bool) -> None:
    """The ``-o`` file: an ``.onnx`` name, in a folder that exists, new unless ``--overwrite``."""
    if not path.lower().endswith(".onnx"):
        raise CliError("the export is an ONNX file", path, "give -o a .onnx name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CliError("the output folder does not exist", folder, "create it first")
    if os.path.isdir(path):
        raise CliError("the output is a folder", path, "give -o a file name ending in .onnx")
    if os.path.exists(path) and not overwrite:
        raise CliError("the output exists", path, "pass --overwrite to replace it, or choose another name")


def check_packages() -> None:
    """The optional ONNX packages, found without importing them (or torch)."""
    import importlib.util

    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(
            f"ONNX export needs {', '.join(missing)}",
            "not installed",
            f"pip install -r {EXPORT_REQUIREMENTS} (in the pack's folder)",
        )


def describe(result, desc) -> list[str]:
    """The lines printed after a successful export."""
    from ..arch.export import architecture_name

    meta = result.metadata
    scale = int(meta["scale"])
    size_mb = os.path.getsize(result.path) / 2**20
    h, w = result.tile
    if result.dynamic:
        m = result.size_multiple

        def sides(bounds) -> str:
            low, high = bounds
            return f"multiples of {m} from {low}" + (f" to {high}" if high is not None else "")

        shape = (
            f"dynamic input (1, {meta['input_channels']}, height, width): height {sides(result.height_range)}, "
            f"width {sides(result.width_range)} (traced at {h}x{w})"
        )
    else:
        shape = (
            f"fixed input (1, {meta['input_channels']}, {h}, {w}) -> (1, {meta['output_channels']}, "
            f"{h * scale}, {w * scale})"
        )
    lines = [
        f"wrote {result.path}: {architecture_name(desc)} x{scale}, {result.precision}, {size_mb:.1f} MiB, "
        f"{result.seconds:.0f} s",
        f"  {shape}",
        f"  input 'input': RGB in [0, 1], {result.precision}; output 'output': unclamped (clamp to [0, 1])",
    ]
    if result.verified:
        lines.append(f"  checked: {result.verified}")
    return lines


def run(args, out: TextIO, err: TextIO) -> int:
    """Export the model; returns the exit code."""
    check_packages()  # these two before torch loads (seconds)
    check_output(args.output, args.overwrite)
    from ..arch.common.model import SRModel
    from ..arch.export import ExportError, UnsupportedExport, export_onnx
    from .models import find_model, load

    path = find_model(args.model)
    desc = load(path)
    ours = isinstance(getattr(desc, "model", None), SRModel)
    try:
        result = export_onnx(
            desc,
            args.output,
            tile=args.tile,
            dynamic=args.dynamic,
            precision=args.precision,
            opset=args.opset,
            verify=True if args.verify else None,
        )
    except ExportError as e:
        if ours and not isinstance(e, UnsupportedExport):
            todo = "this is a bug: report it with the command and the model's name"
        else:
            todo = "run it with PyTorch instead (python -m cli upscale)"
        code = PARTIAL if ours and not isinstance(e, UnsupportedExport) else USAGE
        raise CliError(str(e), path, todo, code=code) from e
    if not args.quiet:
        print("\n".join(describe(result, desc)), file=out)
    return 0
