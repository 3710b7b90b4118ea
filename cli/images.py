"""Image files <-> IMAGE tensors: PNG, JPEG and WebP in, PNG out, alpha and 16 bits kept.

Reading (Pillow): the EXIF orientation is applied; palette images become RGB (RGBA when the
palette has transparency), 1-bit images grey, CMYK/YCbCr RGB, premultiplied alpha straight.
16-bit PNGs keep every bit: grey through Pillow's ``I;16`` mode, grey+alpha/RGB/RGBA -- which
Pillow decodes to 8 bits -- through :func:`_png16_samples`. The result is a ``(H, W, C)`` float32
tensor in [0, 1] with the file's own channels, C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA),
which is what the engine takes (alpha is carried through, see ``engine/channels.py``).

Writing: always PNG, with the same channels; 8 bits per sample, or 16 when the input had 16
(Pillow cannot write 16-bit grey+alpha or colour PNGs, so those go through :func:`_png16_bytes`).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from .errors import CliError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
CHANNEL_NAMES = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}
EXIF_ORIENTATION = 0x0112

# Pillow modes -> the 8-bit mode we read them as (anything not listed becomes RGB).
_MODES_8BIT = {
    "L": "L",
    "LA": "LA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "1": "L",
    "La": "LA",
    "RGBa": "RGBA",
    "PA": "RGBA",
}
# Raw modes Pillow decodes 16-bit grey+alpha / RGB / RGBA PNGs with (keeping the high bytes).
_PNG16_RAW_MODES = ("LA;16B", "RGB;16B", "RGBA;16B")
# EXIF orientation -> the transform that shows the image upright (as PIL.ImageOps.exif_transpose).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass
class Picture:
    """An image file's pixels.

    Args:
        pixels: ``(H, W, C)`` float32 in [0, 1]; C = 1, 2, 3 or 4 (see :data:`CHANNEL_NAMES`).
        bits: bits per sample in the file (8 or 16).
        notes: what the reader had to do that the user may want to know.
    """

    pixels: torch.Tensor
    bits: int = 8
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """E.g. ``"RGBA 16-bit"``."""
        return f"{CHANNEL_NAMES[self.pixels.shape[-1]]} {self.bits}-bit"


def is_image_file(path: str) -> bool:
    """Whether a folder entry is an image the command line reads (by extension)."""
    return os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS)


def read_image(path: str) -> Picture:
    """Read ``path`` as a :class:`Picture`; :class:`CliError` naming the file if it cannot be read."""
    if not os.path.exists(path):
        raise CliError("image not found", path, "check the path")
    if os.path.isdir(path):
        raise CliError("expected an image file, got a folder", path, "pass the folder as an INPUT of upscale")
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            samples, bits = _samples(im, path, notes)
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)  # (reading EXIF may decode a PNG)
    except _READ_ERRORS as e:
        raise CliError(
            "cannot read the image", path, f"{first_line(e)}; is it a complete PNG, JPEG or WebP file?"
        ) from e
    if samples.ndim == 2:
        samples = samples[:, :, None]
    upright = _UPRIGHT.get(orientation)
    if upright is not None:
        samples = upright(samples)
    pixels = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return Picture(pixels, bits, notes)


def _samples(im: Image.Image, path: str, notes: list[str]) -> tuple[np.ndarray, int]:
    """``(H, W[, C])`` float32 samples in [0, 1] and the file's bits per sample."""
    tile = im.tile[0] if len(im.tile) == 1 else None
    if im.format == "PNG" and tile is not None and tile[3] in _PNG16_RAW_MODES:
        samples = _png16_samples(path, tile, notes)
        if samples is not None:
            return samples.astype(np.float32) / 65535.0, 16
    if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit grey ("I": older Pillow versions)
        values = np.asarray(im).astype(np.float32)
        return np.clip(values, 0, 65535) / 65535.0, 16
    if im.mode == "P":
        target = "RGBA" if "transparency" in im.info else "RGB"
    else:
        target = _MODES_8BIT.get(im.mode, "RGB")
    converted = im if im.mode == target else im.convert(target)
    return np.asarray(converted).astype(np.float32) / 255.0, 8


def _decode_as(path: str, tile, raw_mode: str) -> np.ndarray:
    """The file decoded by Pillow with its one PNG tile read in ``raw_mode`` (8-bit samples)."""
    with Image.open(path) as im:
        im.tile = [tile._replace(args=raw_mode)]
        return np.asarray(im)


def _png16_samples(path: str, tile, notes: list[str]) -> np.ndarray | None:
    """Every bit of a 16-bit grey+alpha, RGB or RGBA PNG, as uint16 ``(H, W, C)``.

    Pillow has no 16-bit colour mode: it decodes these files in raw modes that keep each sample's
    high byte (``RGB;16B``). Its decoder reads the same data with a raw mode of the same pixel size
    that keeps the other byte (``RGB;16L`` takes byte 1 of each sample, the low byte of PNG's
    big-endian samples), so PNG's unfiltering and interlacing work unchanged; the file is decoded
    twice and the bytes combined. Grey+alpha is read once as raw ``RGBA``: its four bytes verbatim.
    ``None`` (read as 8 bits, with a note) when this Pillow version does not allow it.
    """
    raw_mode = tile[3]
    try:
        if raw_mode == "LA;16B":
            b = _decode_as(path, tile, "RGBA").astype(np.uint16)
            return np.stack([b[..., 0] << 8 | b[..., 1], b[..., 2] << 8 | b[..., 3]], axis=-1)
        high = _decode_as(path, tile, raw_mode).astype(np.uint16)
        low = _decode_as(path, tile, raw_mode.replace(";16B", ";16L")).astype(np.uint16)
        return high << 8 | low
    except (AttributeError, ValueError, OSError) as e:  # a Pillow without tile._replace or the raw mode
        notes.append(
            f"16-bit PNG read with 8 bits per sample (this Pillow cannot give more: {first_line(e)})"
        )
        return None


def to_samples(pixels: torch.Tensor, bits: int) -> np.ndarray:
    """``(H, W, C)`` floats in [0, 1] -> rounded uint8 or uint16 samples."""
    peak, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    values = pixels.detach().float().cpu().clamp(0.0, 1.0).mul(peak).round().numpy()
    return values.astype(dtype)


def write_png(file: str | BinaryIO, pixels: torch.Tensor, bits: int = 8) -> None:
    """Write ``(H, W, C)`` pixels in [0, 1] as a PNG with ``bits`` (8 or 16) per sample.

    ``file``: a path, or a binary file open for writing. The command line writes its outputs
    through :func:`.outputs.save_png` (a temporary file renamed over the target).
    """
    samples = to_samples(pixels, bits)
    if bits == 16:
        data = _png16_bytes(samples)
        if isinstance(file, str):
            with open(file, "wb") as f:
                f.write(data)
        else:
            file.write(data)
    else:
        Image.fromarray(samples[..., 0] if samples.shape[-1] == 1 else samples).save(file, "PNG")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16_bytes(samples: np.ndarray) -> bytes:
    """A 16-bit PNG file of uint16 ``(H, W, C)`` samples (grey, grey+alpha, RGB or RGBA).

    Every row uses PNG's "Up" filter (the byte-wise difference to the row above).
    """
    height, width, channels = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type Up; the row above the first is zeros
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps mod 256
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )
