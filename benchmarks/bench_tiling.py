"""Our tiling vs ComfyUI core's tiling: error against the untiled output, seams, time.

    python -m benchmarks.bench_tiling                                  # Compact x2 + SPAN x4, 128 px
    python -m benchmarks.bench_tiling --models compact --size 160 --tiles 32 64 --overlaps 8 16
    python -m benchmarks.bench_tiling --models DRCT_x4 --size 96       # an oracle variant, once it loads

For each model, tile size and overlap, the same photo crop is upscaled three ways: untiled (one
call: the reference), with our engine, and with :func:`core_tiled_scale` -- a re-implementation
of what ``comfy.utils.tiled_scale`` does, so ComfyUI need not be installed. Columns:

* ``max_err`` / ``mean_err``: absolute difference to the untiled output (after clamping to [0, 1]).
* ``psnr_db``: PSNR of the tiled output against the untiled one (higher = closer).
* ``seam``: the largest mean error along one full output row or column -- a seam is a line.
* ``calls``: model calls (tiles); ``shapes``: distinct tile shapes (1 = static shapes).
* ``seconds``: median wall time.

Random-weight models exaggerate edge effects compared with trained ones; the comparison between
the two tilings is what matters. Run from the repository root; writes a CSV under
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Callable

import torch
from torch import Tensor

from .common import REPO, import_pack, print_table, psnr, time_call


def _feather(n: int, feather: int) -> Tensor:
    """Core's 1-D edge mask: linear ramps of ``feather`` pixels at both ends (none if too short)."""
    if feather >= n or feather <= 0:
        return torch.ones(n)
    i = torch.arange(n, dtype=torch.float32)
    left = torch.clamp((i + 1) / feather, max=1.0)
    return left * left.flip(0)


def core_tiled_scale(
    image: Tensor, fn: Callable[[Tensor], Tensor], tile: int, overlap: int, scale: int, out_channels: int = 3
) -> Tensor:
    """ComfyUI core's tiling (``comfy.utils.tiled_scale``) for comparisons, on ``(B, C, H, W)``.

    Tiles start every ``tile - overlap`` pixels; the last ones are clamped to the edge and may be
    narrower (different shapes). Each tile's output is weighted by a linear feather of
    ``overlap * scale`` output pixels on all four sides, image borders included, and the sum is
    divided by the summed weights. A frame that fits in one tile is one call.
    """
    b, _, h, w = image.shape
    out = torch.empty(b, out_channels, round(h * scale), round(w * scale))
    for f in range(b):
        s = image[f : f + 1]
        if h <= tile and w <= tile:
            out[f : f + 1] = fn(s)
            continue
        acc = torch.zeros(1, out_channels, h * scale, w * scale)
        div = torch.zeros_like(acc)
        ys = range(0, h - overlap, tile - overlap) if h > tile else [0]
        xs = range(0, w - overlap, tile - overlap) if w > tile else [0]
        for y, x in itertools.product(ys, xs):
            y, x = max(0, min(h - overlap, y)), max(0, min(w - overlap, x))
            th, tw = min(tile, h - y), min(tile, w - x)
            ps = fn(s[:, :, y : y + th, x : x + tw])
            feather = round(overlap * scale)
            mask = _feather(ps.shape[2], feather)[:, None] * _feather(ps.shape[3], feather)[None, :]
            acc[:, :, y * scale : y * scale + ps.shape[2], x * scale : x * scale + ps.shape[3]] += ps * mask
            div[:, :, y * scale : y * scale + ps.shape[2], x * scale : x * scale + ps.shape[3]] += mask
        out[f : f + 1] = acc / div
    return out


def seam_score(tiled: Tensor, ref: Tensor) -> float:
    """Largest mean absolute error along one full row or column of ``(H, W, C)`` images."""
    err = (tiled - ref).abs().mean(dim=-1)
    return max(err.mean(dim=0).max().item(), err.mean(dim=1).max().item())


def _import_pack():
    import_pack()
    import srt.arch as arch
    import srt.engine.runner as runner

    return arch, runner


def _model(name: str, arch):
    """A descriptor: random-weight spandrel models, or an oracle variant through our loader."""
    torch.manual_seed(0)
    if name == "compact":
        from spandrel.architectures.Compact import Compact

        net = Compact(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=8, upscale=2, act_type="prelu")
    elif name == "span":
        from spandrel.architectures.SPAN import SPAN

        net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=32, upscale=4)
    else:
        from srt.tests.model_helpers import load_oracle

        return arch.load_state_dict(dict(load_oracle().make_state_dict(name))).eval()
    return arch.load_state_dict(net.state_dict()).eval()


def _photo(size: int) -> Tensor:
    """An astronaut crop as a ComfyUI IMAGE ``(1, H, W, C)``."""
    from srt.tests.model_helpers import photo_crop

    return photo_crop("astronaut", 60, 140, size, size).permute(0, 2, 3, 1).contiguous()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["compact", "span"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--tiles", nargs="+", type=int, default=[32, 64])
    p.add_argument("--overlaps", nargs="+", type=int, default=[8, 16])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)

    arch, runner = _import_pack()
    image = _photo(args.size)
    x = image.permute(0, 3, 1, 2).contiguous()
    rows = []
    for name in args.models:
        desc = _model(name, arch)
        shapes: list[tuple[int, ...]] = []
        desc.model.register_forward_pre_hook(lambda _m, inp, s=shapes: s.append(tuple(inp[0].shape)))
        with torch.inference_mode():
            ref = desc(x).clamp(0, 1).permute(0, 2, 3, 1)
        for tile, overlap in itertools.product(args.tiles, args.overlaps):
            settings = runner.Settings(tile=tile, overlap=overlap)
            methods = {
                "ours": lambda s=settings, d=desc: runner.upscale(d, image, s, runner.Host()).image,
                "core": lambda t=tile, o=overlap, d=desc: (
                    core_tiled_scale(x, d, t, o, d.scale).clamp(0, 1).permute(0, 2, 3, 1)
                ),
            }
            for method, run in methods.items():
                with torch.inference_mode():
                    shapes.clear()
                    out = run()
                    calls, n_shapes = len(shapes), len(set(shapes))
                    seconds = time_call(run, args.repeats, 0)
                err = (out - ref).abs()
                rows.append(
                    {
                        "model": name,
                        "size": args.size,
                        "tile": tile,
                        "overlap": overlap,
                        "method": method,
                        "calls": calls,
                        "shapes": n_shapes,
                        "max_err": f"{err.max().item():.4f}",
                        "mean_err": f"{err.mean().item():.5f}",
                        "psnr_db": f"{psnr(out, ref):.2f}",
                        "seam": f"{seam_score(out[0], ref[0]):.5f}",
                        "seconds": f"{seconds:.3f}",
                    }
                )
                print(rows[-1], flush=True)
    print()
    csv = args.csv or os.path.join(REPO, "benchmarks", "results", f"tiling_{args.size}.csv")
    print_table(rows, csv)


if __name__ == "__main__":
    main()
