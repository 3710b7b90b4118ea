"""Compare two IMAGE batches: align them, measure them, and draw a comparison image.

``compare(image_a, image_b, reference)`` is what the Compare node runs:

1. ``align_inputs`` makes the batches comparable -- RGB, the same length (a shorter batch repeats
   its last frame) and the same size (resized to the reference, or to ``image_a``, with a note).
2. Metrics (see :mod:`.metrics`) of A and B against the reference when there is one, otherwise of
   B against A, on the chosen channels, plus the batch means on the other channels.
3. One comparison image per frame: side by side, an A|B split, or an amplified difference
   heatmap of B against the reference (or A).

Pure torch: no ComfyUI imports. Images are ``(B, H, W, C)`` float tensors in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .metrics import CHANNELS, Channels, Scores, measure

Mode = Literal["side_by_side", "split", "difference"]
MODES: tuple[Mode, ...] = ("side_by_side", "split", "difference")
CHANNEL_NAMES = {"y": "Y channel (BT.601)", "rgb": "RGB"}


class CompareInputError(ValueError):
    """An input of the Compare node cannot be compared (not an image batch, empty, bad option)."""


@dataclass(frozen=True)
class AlignedInputs:
    """Inputs made comparable: RGB, same batch length, same size, same device and dtype."""

    a: torch.Tensor
    b: torch.Tensor
    reference: torch.Tensor | None
    notes: tuple[str, ...]


def as_rgb_batch(images: torch.Tensor, name: str, notes: list[str]) -> torch.Tensor:
    """A (B, H, W, 3) batch from an IMAGE input; alpha is dropped and gray repeated, with a note."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0 or min(images.shape[1:3]) == 0:
        raise CompareInputError(
            f"{name} must be a non-empty IMAGE batch (B, H, W, C); got shape {tuple(images.shape)}"
        )
    channels = images.shape[-1]
    if channels == 4:
        notes.append(f"{name}: alpha channel ignored")
        return images[..., :3]
    if channels == 1:
        notes.append(f"{name}: grayscale, repeated to RGB")
        return images.expand(-1, -1, -1, 3)
    if channels != 3:
        raise CompareInputError(f"{name} has {channels} channels; connect an RGB (or RGBA/gray) IMAGE")
    return images


def match_batch(images: torch.Tensor, length: int, name: str, notes: list[str]) -> torch.Tensor:
    """Extend a shorter batch to ``length`` frames by repeating its last frame."""
    frames = images.shape[0]
    if frames == length:
        return images
    notes.append(f"{name} has {frames} frame(s): its last frame is repeated to make {length}")
    return torch.cat([images, images[-1:].expand(length - frames, -1, -1, -1)])


def match_size(
    images: torch.Tensor, size: tuple[int, int], name: str, target: str, notes: list[str]
) -> torch.Tensor:
    """Resize (bicubic, antialiased) to ``size`` = (H, W) when it differs, with a note."""
    height, width = images.shape[1:3]
    if (height, width) == size:
        return images
    notes.append(
        f"{name} is {width}x{height}: resized (bicubic) to {size[1]}x{size[0]} to match {target}; "
        "its metrics describe the resized image"
    )
    pixels = F.interpolate(
        images.movedim(-1, 1).float(), size=size, mode="bicubic", align_corners=False, antialias=True
    )
    return pixels.clamp(0.0, 1.0).movedim(1, -1).to(images.dtype)


def align_inputs(
    image_a: torch.Tensor, image_b: torch.Tensor, reference: torch.Tensor | None = None
) -> AlignedInputs:
    """Make A, B (and the reference) the same length and size; the size follows the reference, else A."""
    notes: list[str] = []
    device = image_a.device
    dtype = image_a.dtype if image_a.is_floating_point() else torch.float32
    named = {"image_a": image_a, "image_b": image_b}
    if reference is not None:
        named["reference"] = reference
    batches = {name: as_rgb_batch(x, name, notes).to(device, dtype) for name, x in named.items()}
    length = max(x.shape[0] for x in batches.values())
    target = "reference" if reference is not None else "image_a"
    size = tuple(batches[target].shape[1:3])
    for name, x in batches.items():
        batches[name] = match_size(match_batch(x, length, name, notes), size, name, target, notes)
    return AlignedInputs(batches["image_a"], batches["image_b"], batches.get("reference"), tuple(notes))


def side_by_side(*panels: torch.Tensor) -> torch.Tensor:
    """Frames placed left to right: (B, H, W, C) x n -> (B, H, n W, C)."""
    return torch.cat(panels, dim=2)


def split_view(a: torch.Tensor, b: torch.Tensor, position: float = 0.5) -> torch.Tensor:
    """A left of ``position`` (fraction of the width), B right of it, a thin white line between."""
    width = a.shape[2]
    cut = min(max(round(width * position), 0), width)
    view = torch.cat([a[:, :, :cut], b[:, :, cut:]], dim=2)
    line = max(1, width // 256)
    start = min(max(cut - line // 2, 0), max(width - line, 0))
    view[:, :, start : start + line] = 1.0
    return view


def hot_colormap(values: torch.Tensor) -> torch.Tensor:
    """(...,) values in [0, 1] -> (..., 3) black -> red -> yellow -> white."""
    values = values.clamp(0.0, 1.0)
    return torch.stack([(3 * values - k).clamp(0.0, 1.0) for k in range(3)], dim=-1)


def difference_heatmap(test: torch.Tensor, target: torch.Tensor, gain: float) -> torch.Tensor:
    """|test - target| averaged over channels, multiplied by ``gain``, as a heatmap image."""
    return hot_colormap((test - target).abs().mean(dim=-1) * gain)


def comparison_image(aligned: AlignedInputs, mode: Mode, gain: float) -> torch.Tensor:
    """The comparison IMAGE: side by side (A | B | reference), A|B split, or B's difference heatmap."""
    if mode == "side_by_side":
        panels = [aligned.a, aligned.b] + ([aligned.reference] if aligned.reference is not None else [])
        return side_by_side(*panels)
    if mode == "split":
        return split_view(aligned.a, aligned.b)
    if mode == "difference":
        target = aligned.reference if aligned.reference is not None else aligned.a
        return difference_heatmap(aligned.b, target, gain)
    raise CompareInputError(f"mode must be one of {MODES}, got {mode!r}")


@dataclass(frozen=True)
class Comparison:
    """Everything the Compare node shows and returns.

    ``scores`` maps a label ("A vs reference", "B vs reference" or "B vs A") to its Scores on the
    chosen channels; ``other_scores`` holds the same on the other channels (batch means are
    reported). The headline ``psnr``/``ssim`` are B's batch means (the last label).
    """

    image: torch.Tensor
    aligned: AlignedInputs
    channels: Channels
    border: int
    scores: dict[str, Scores]
    other_scores: dict[str, Scores]

    @property
    def psnr(self) -> float:
        """Mean PSNR of B against the reference (or against A) on the chosen channels."""
        return list(self.scores.values())[-1].mean_psnr

    @property
    def ssim(self) -> float:
        """Mean SSIM of B against the reference (or against A) on the chosen channels."""
        return list(self.scores.values())[-1].mean_ssim

    def summary(self) -> list[str]:
        """One line per label with the batch means, e.g. ``B vs A: 31.20 dB, SSIM 0.9512``."""
        return [f"{label}: {s.mean_psnr:.2f} dB, SSIM {s.mean_ssim:.4f}" for label, s in self.scores.items()]

    def report(self, names: dict[str, str] | None = None) -> str:
        """Per-image and mean PSNR (2 decimals) and SSIM (4 decimals), then notes.

        Args:
            names: what to call ``image_a``, ``image_b`` and ``reference`` in the notes (the
                command line's file names); without it the node's report, which ends by naming what
                its ``psnr``/``ssim`` outputs hold.
        """
        frames, height, width = self.aligned.b.shape[:3]
        other = "rgb" if self.channels == "y" else "y"
        header = f"{frames} frame(s), {width}x{height}, {CHANNEL_NAMES[self.channels]}"
        lines = [f"{header}, border crop {self.border}, 8-bit values", ""]
        lines.append(f"{'frame':<10}" + "".join(f"{label:<20}" for label in self.scores).rstrip())
        lines.append(" " * 10 + ("PSNR dB   SSIM      " * len(self.scores)).rstrip())
        for i in range(frames):
            lines.append(_row(str(i + 1), [(s.psnr[i], s.ssim[i]) for s in self.scores.values()]))
        lines.append(_row("mean", [(s.mean_psnr, s.mean_ssim) for s in self.scores.values()]))
        other_means = [(s.mean_psnr, s.mean_ssim) for s in self.other_scores.values()]
        lines.append(_row(f"mean {other.upper()}", other_means))
        if names is None:
            lines += ["", f"psnr/ssim outputs: {list(self.scores)[-1]}, {CHANNEL_NAMES[self.channels]}"]
        lines += [f"note: {rename(note, names)}" for note in self.aligned.notes]
        return "\n".join(lines)


def rename(note: str, names: dict[str, str] | None) -> str:
    """``note`` with the node's input names replaced by ``names`` (e.g. file names)."""
    for name, shown in (names or {}).items():
        note = note.replace(name, shown)
    return note


def _row(name: str, cells: list[tuple[float, float]]) -> str:
    """One report line: a name column, then PSNR (2 decimals) and SSIM (4 decimals) per label."""
    return f"{name:<10}" + "".join(f"{p:<10.2f}{s:<10.4f}" for p, s in cells).rstrip()


def _score_all(aligned: AlignedInputs, channels: Channels, border: int) -> dict[str, Scores]:
    """Scores of A and B against the reference, or of B against A when there is none."""
    if aligned.reference is None:
        return {"B vs A": measure(aligned.b, aligned.a, channels, border)}
    return {
        "A vs reference": measure(aligned.a, aligned.reference, channels, border),
        "B vs reference": measure(aligned.b, aligned.reference, channels, border),
    }


def compare(
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    reference: torch.Tensor | None = None,
    mode: Mode = "side_by_side",
    channels: Channels = "y",
    border: int = 0,
    gain: float = 8.0,
) -> Comparison:
    """Align the inputs, measure them and build the comparison image.

    Args:
        image_a: IMAGE batch (B, H, W, C) in [0, 1], e.g. one model's result.
        image_b: IMAGE batch, e.g. the other model's result.
        reference: optional ground truth; without it B is measured against A.
        mode: comparison image, one of ``MODES``.
        channels: metrics on ``"y"`` (BT.601 luma) or ``"rgb"``.
        border: pixels cropped from every side before measuring.
        gain: amplification of the difference heatmap.

    Raises:
        CompareInputError: an input is not an image batch or an option is out of range.
        MetricInputError: the border crop leaves no pixels.
    """
    if channels not in CHANNELS:
        raise CompareInputError(f"channels must be one of {CHANNELS}, got {channels!r}")
    if mode not in MODES:
        raise CompareInputError(f"mode must be one of {MODES}, got {mode!r}")
    aligned = align_inputs(image_a, image_b, reference)
    other: Channels = "rgb" if channels == "y" else "y"
    return Comparison(
        image=comparison_image(aligned, mode, gain),
        aligned=aligned,
        channels=channels,
        border=border,
        scores=_score_all(aligned, channels, border),
        other_scores=_score_all(aligned, other, border),
    )
