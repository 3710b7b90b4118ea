"""``compare``: the Compare node's metrics and report for two image files (and a reference).

The work is :func:`..engine.comparison.compare`, as in the node; this module only reads the files,
prints the node's report and optionally saves the comparison image: never over one of the
images compared, over an existing file only with ``--overwrite``, complete or not at all
(:func:`.outputs.save_png`).
"""

from __future__ import annotations

from typing import TextIO

import torch

from ..engine.comparison import CompareInputError, compare, rename
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


def check_sizes(images: dict[str, torch.Tensor], resize: bool) -> None:
    """Images of different sizes are compared only with ``--resize`` (never silently stretched);
    the size follows the reference, else the first image."""
    sizes = {path: tuple(x.shape[1:3]) for path, x in images.items()}
    target, size = list(sizes.items())[-1] if len(sizes) == 3 else next(iter(sizes.items()))
    other = next((path for path, s in sizes.items() if s != size), None)
    if other is None or resize:
        return
    h, w = sizes[other]
    raise CliError(
        "the images differ in size",
        f"{other} is {w}x{h}, {target} is {size[1]}x{size[0]}",
        f"crop them alike, or pass --resize to compare {other} resized (bicubic) to {size[1]}x{size[0]}",
    )


def run(args, out: TextIO, err: TextIO) -> int:
    """Print the comparison report (and save the comparison image with ``-o``); returns the exit code."""
    inputs = [p for p in (args.a, args.b, args.reference) if p]
    if args.output:
        if not args.output.lower().endswith(".png"):
            raise CliError("the comparison image is a PNG", args.output, "give it a .png name")
        check_targets(inputs, [args.output], args.overwrite)
    a, b = image_batch(args.a), image_batch(args.b)
    reference = image_batch(args.reference) if args.reference else None
    names = {"image_a": args.a, "image_b": args.b, "reference": args.reference or "reference"}
    check_sizes(
        {args.a: a, args.b: b, **({args.reference: reference} if args.reference else {})}, args.resize
    )
    try:
        result = compare(
            a, b, reference, mode=args.mode, channels=args.channels, border=args.border_crop, gain=args.gain
        )
    except (CompareInputError, MetricInputError) as e:
        raise CliError("cannot compare the images", ", ".join(inputs), first_line(e)) from e
    if args.resize:  # say so before the table, not after it
        for note in result.aligned.notes:
            print(f"note: {rename(note, names)}", file=err)
    print(result.report(names), file=out)
    if args.output:
        try:
            save_png(args.output, result.image[0], overwrite=args.overwrite)
        except FileExistsError as e:  # appeared while the images were compared
            raise exists_error([args.output]) from e
        except OSError as e:
            raise CliError("cannot write the comparison image", args.output, first_line(e)) from e
    return 0
