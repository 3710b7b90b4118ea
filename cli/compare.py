"""``compare``: the Compare node's metrics and report for two image files (and a reference).

The work is :func:`..engine.comparison.compare`, as in the node; this module only reads the files,
prints the node's report and optionally saves the comparison image: never over one of the
images compared, over an existing file only with ``--overwrite``, complete or not at all
(:func:`.outputs.save_png`).
"""

from __future__ import annotations

from typing import TextIO

import torch

from ..engine.comparison import CompareInputError, compare
from ..engine.metrics import MetricInputError
from .errors import CliError, first_line
from .images import read_image
from .outputs import check_targets, exists_error, save_png


def image_batch(path: str) -> torch.Tensor:
    """A one-image IMAGE batch of ``path``; grey+alpha becomes RGBA (the comparison drops alpha, with a note)."""
    pixels = read_image(path).pixels
    if pixels.shape[-1] == 2:
        grey, alpha = pixels[..., :1], pixels[..., 1:]
        pixels = torch.cat([grey, grey, grey, alpha], dim=-1)
    return pixels[None]


def run(args, out: TextIO, err: TextIO) -> int:
    """Print the comparison report (and save the comparison image with ``-o``); returns the exit code."""
    inputs = [p for p in (args.a, args.b, args.reference) if p]
    if args.output:
        if not args.output.lower().endswith(".png"):
            raise CliError("the comparison image is a PNG", args.output, "give it a .png name")
        check_targets(inputs, [args.output], args.overwrite)
    a, b = image_batch(args.a), image_batch(args.b)
    reference = image_batch(args.reference) if args.reference else None
    try:
        result = compare(
            a, b, reference, mode=args.mode, channels=args.channels, border=args.border_crop, gain=args.gain
        )
    except (CompareInputError, MetricInputError) as e:
        raise CliError("cannot compare the images", ", ".join(inputs), first_line(e)) from e
    print(result.report(), file=out)
    if args.output:
        try:
            save_png(args.output, result.image[0], overwrite=args.overwrite)
        except FileExistsError as e:  # appeared while the images were compared
            raise exists_error([args.output]) from e
        except OSError as e:
            raise CliError("cannot write the comparison image", args.output, first_line(e)) from e
    return 0
