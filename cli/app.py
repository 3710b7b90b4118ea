"""The command line's arguments, and how every failure becomes one line and an exit code.

Exit codes: 0 done; 1 some images failed (the others were written) or the model failed; 2 bad
arguments or bad input (missing file, unreadable image, unknown model, a folder without images,
an output that is an input or exists without ``--overwrite``); 130 interrupted. ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import TextIO

from .choices import (
    BACKENDS,
    CHANNELS,
    COMPILE_CHOICES,
    CUDA_MIN_TILES,
    DEFAULT_OVERLAP,
    DEFAULT_PATTERN,
    DEFAULT_SCALE,
    DEFAULT_SCALES,
    DEVICES,
    EXPORT_PRECISIONS,
    EXPORT_TILE,
    MODES,
    NAMING_RULE,
    PRECISIONS,
)
from .errors import USAGE, CliError, first_line
from .signals import Stopped, exit_code

PROG = "python -m cli"
INTERRUPTED = 130
EXIT_CODES = (
    "exit codes: 0 every image written; 1 some images failed (the others were written) or the model "
    "failed on them; 2 bad arguments or input (nothing written); 130 interrupted (Ctrl+C), 143 stopped "
    "by SIGTERM, 129 by SIGHUP (no partial file is left)"
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one :class:`CliError` line instead of usage + message."""

    def error(self, message: str):
        raise CliError(message, self.prog, f"see {self.prog} --help")


def _size(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``upscale``, ``info``, ``export`` and ``compare``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print the traceback of an error too")
    parser = _Parser(
        prog=PROG,
        description="Super-resolution with the pack's models and tiling engine, without ComfyUI.",
        epilog=(
            f"examples:\n  {PROG} upscale photo.jpg -o photo_x4.png\n  {PROG} upscale photos/ -o big/ --scale 2\n"
            f"  {PROG} info weights/my_model.safetensors\n  {PROG} compare a.png b.png --reference original.png\n"
            f"  {PROG} export weights/my_model.safetensors -o my_model.onnx --tile 512"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command_name", metavar="COMMAND", parser_class=_Parser)

    up = commands.add_parser(
        "upscale",
        parents=[common],
        help="upscale image files or folders to PNG",
        description=(
            "Upscale PNG/JPEG/WebP images (files or folders) to PNG; alpha and 16-bit depth are kept. "
            f"Output names: {NAMING_RULE}. An output is never written over an input, and an existing "
            "one only with --overwrite; each PNG appears complete or not at all (written to a temporary "
            "file, then renamed). An image that fails is reported on one line and the others still run. "
            "One job at a time per output folder (a second is refused, naming the first). Running the "
            "same command again resumes: an image is skipped only when the folder's job log "
            "(.srt_upscale_job.jsonl) traces it to this model, these settings and its unchanged "
            "input; images of other settings are made again."
        ),
        epilog=EXIT_CODES,
    )
    up.add_argument("inputs", nargs="+", metavar="INPUT", help="image file or folder of images")
    up.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="PNG file (one image) or folder (created if needed)",
    )
    up.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that exist (never an input); without it an existing output is an error, "
        "unless the folder holds this same job (then it is resumed)",
    )
    up.add_argument(
        "--scale",
        type=int,
        choices=DEFAULT_SCALES,
        help=f"without --model: the default model of this scale (weights/{DEFAULT_PATTERN}; default "
        f"{DEFAULT_SCALE}); with --model of another scale: the output is resized to it",
    )
    up.add_argument("--model", metavar="NAME_OR_PATH", help="checkpoint path, or a file name in weights/")
    up.add_argument(
        "--tile", type=_size, default=0, metavar="N", help="tile side in input pixels; 0 = auto (default)"
    )
    up.add_argument(
        "--overlap",
        type=_size,
        default=DEFAULT_OVERLAP,
        metavar="N",
        help="overlap of neighbouring tiles (default %(default)s)",
    )
    up.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="compute precision (default auto)"
    )
    up.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA if available, else CPU")
    up.add_argument(
        "--threads",
        type=_size,
        default=0,
        metavar="N",
        help="CPU threads of torch in each process (0 = default: all cores, shared among CPU workers); "
        "CPU outputs are bit-identical only between runs with the same number",
    )
    up.add_argument(
        "--compile",
        choices=COMPILE_CHOICES,
        default="auto",
        help="run the model through torch.compile (one graph per tile shape; CUDA graphs on CUDA). "
        "auto (default): only where it pays for its compile time (paid per tile shape and process): "
        f"on CUDA from {CUDA_MIN_TILES} tiles of one shape per process (an estimated minute of "
        "compiling against 0.25 s saved per 512 px tile), never on the CPU (compiled is slower there "
        "than the eager oneDNN path for most models, and compiles for minutes); on: always (eager, "
        "with a warning, where it cannot compile); off: never",
    )
    up.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="what runs the model (default torch): onnxruntime or openvino run its exported graph on the "
        "CPU, one fixed-shape export per tile shape (kept in $SRT_ONNX_CACHE, default "
        "~/.cache/comfyui-sr-transformers/onnx), with the same tiling, blending and precision; fp32/fp16 "
        "only. Needs pip install -r requirements-export.txt (and openvino)",
    )
    scale_out = up.add_argument_group("several devices or machines")
    scale_out.add_argument(
        "--devices",
        metavar="LIST",
        help="one worker process per device, images from one shared queue: all (every CUDA device), "
        "CUDA indices like 0,1, or cpu,cpu (CPU workers)",
    )
    scale_out.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on a Ray cluster with Ray Data (ADDRESS, or auto for the one started with ray start here); "
        "without ADDRESS a local Ray is started. Needs pip install -r requirements-ray.txt",
    )
    scale_out.add_argument(
        "--concurrency",
        type=_size,
        default=0,
        metavar="N",
        help="with --ray: model actors (default: one per GPU of the cluster, 1 without GPUs)",
    )
    up.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary lines, errors only"
    )
    up.set_defaults(run="upscale")

    inf = commands.add_parser(
        "info",
        parents=[common],
        help="what Super Resolution Model Loader shows about a checkpoint",
        description="Describe a checkpoint.",
    )
    inf.add_argument("model", metavar="MODEL", help="checkpoint path, or a file name in weights/")
    inf.set_defaults(run="info")

    exp = commands.add_parser(
        "export",
        parents=[common],
        help="a checkpoint as an ONNX file (onnxruntime, TensorRT, chaiNNer)",
        description=(
            "Export a checkpoint as one ONNX graph (PyTorch's exporter, checked with onnx.checker), "
            "with the model's precision policy: a fixed tile shape by default (what TensorRT builds "
            "best), or --dynamic height and width. Needs pip install -r requirements-export.txt."
        ),
        epilog=(
            "exit codes: 0 written; 2 bad arguments or input (missing ONNX packages, unknown model, an "
            "architecture or precision that does not export; nothing written); 1 our implementation "
            "failed to export (a bug: report it)"
        ),
    )
    exp.add_argument("model", metavar="MODEL", help="checkpoint path, or a file name in weights/")
    exp.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    exp.add_argument(
        "--tile",
        type=_size,
        default=EXPORT_TILE,
        metavar="N",
        help="tile side in input pixels, rounded up to the model's size multiple: the fixed graph's "
        "input size, the example size of a --dynamic one (default %(default)s)",
    )
    exp.add_argument(
        "--dynamic",
        action="store_true",
        help="height and width as symbolic sizes (multiples of the model's size multiple, in the range "
        "the model allows: printed and written to the file's metadata)",
    )
    exp.add_argument(
        "--precision",
        choices=EXPORT_PRECISIONS,
        default="fp32",
        help="weights and input dtype (default fp32); fp16/bf16 keep the model's float32 residual stream",
    )
    exp.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the exporter's)")
    exp.add_argument(
        "--verify",
        action="store_true",
        help="also run a fixed graph in onnxruntime against PyTorch at its tile (a full forward of each); "
        "dynamic graphs are always checked at two small sizes",
    )
    exp.add_argument("--overwrite", action="store_true", help="replace the -o file if it exists")
    exp.add_argument("-q", "--quiet", action="store_true", help="errors only")
    exp.set_defaults(run="export")

    cmp = commands.add_parser(
        "compare",
        parents=[common],
        help="PSNR/SSIM of two images, as the Compare node reports them",
        description="PSNR/SSIM of B (and A) against a reference, or of B against A without one.",
    )
    cmp.add_argument("a", metavar="A", help="first image")
    cmp.add_argument("b", metavar="B", help="second image")
    cmp.add_argument("--reference", metavar="R", help="ground truth; without it B is measured against A")
    cmp.add_argument(
        "--channels", choices=CHANNELS, default="y", help="y: BT.601 luma as SR papers (default); rgb"
    )
    cmp.add_argument("--border-crop", type=_size, default=0, metavar="N", help="pixels ignored at every edge")
    cmp.add_argument(
        "-o", "--output", metavar="PNG", help="also save the comparison image (never over A, B or R)"
    )
    cmp.add_argument("--overwrite", action="store_true", help="replace the -o file if it exists")
    cmp.add_argument(
        "--resize",
        action="store_true",
        help="compare images of different sizes, resized (bicubic) to the reference's (else A's); "
        "without it they are refused",
    )
    cmp.add_argument("--mode", choices=MODES, default="side_by_side", help="comparison image layout")
    cmp.add_argument("--gain", type=float, default=8.0, help="amplification of the difference heatmap")
    cmp.set_defaults(run="compare")
    return parser


def check_inputs(args) -> None:
    """Files the command reads that do not exist: one error naming the first, before any import."""
    paths = {"upscale": lambda: args.inputs, "compare": lambda: [args.a, args.b, args.reference]}
    # export's MODEL may be a name in weights/: find_model answers that (cli/export.py)
    for path in paths.get(args.command_name, list)():
        if path is not None and not os.path.exists(path):
            raise CliError("input not found", path, "check the path")


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Parse ``argv``, run the command, and turn every failure into one line; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CliError as e:
        print(f"error: {e}", file=err)
        return USAGE
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if not args.command_name:
        parser.print_help(err)
        return USAGE
    try:
        check_inputs(args)  # before the seconds importing torch takes
        command = importlib.import_module(f".{args.run}", __package__)
        return command.run(args, out, err)
    except CliError as e:
        if args.debug:
            traceback.print_exception(e, file=err)
        print(f"error: {e}", file=err)
        return e.code
    except KeyboardInterrupt as e:  # Ctrl+C, SIGTERM or SIGHUP (cli/signals.py)
        print(f"error: {'stopped by ' + str(e) if isinstance(e, Stopped) else 'interrupted'}", file=err)
        return exit_code(e)
    except Exception as e:  # a bug: still one line, unless --debug asks for the traceback
        if args.debug:
            raise
        print(
            f"error: unexpected {type(e).__name__}: {first_line(e)} ({PROG} {args.command_name}): "
            "run again with --debug for the traceback and report it",
            file=err,
        )
        return 1
