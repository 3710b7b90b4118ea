"""What a Swin checkpoint says about its windows (SwinIR, DRCT): the window side, from a
position-bias table's rows, and whether the shifting layers shift, from metadata or saved buffers."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import ConfigError
from .metadata import meta_int

MAX_IMG_SIZE = 65536  # a training patch side (48-128 px in the official configs)


def window_from_table(rows: int, family: str) -> int:
    """The window side ``w`` of a relative-position bias table of ``(2w - 1)^2`` rows.

    Args:
        rows: the table's rows.
        family: the family the checkpoint was taken for (named in the error).

    Raises:
        ConfigError: ``rows`` is ``(2w - 1)^2`` for no ``w``.
    """
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise ConfigError(
            f"relative_position_bias_table has {rows} rows, not (2 * window - 1)^2 for any window: "
            f"the checkpoint is not a {family} model or is damaged."
        )
    return (side + 1) // 2


def read_shift(
    sd: Mapping, meta: Mapping, window: int, mask_key: str | None, index_key: str, inferred: dict[str, str]
) -> bool:
    """Whether the layers that may shift their windows do (not in models trained on one window).

    traiNNer-redux metadata's training ``img_size`` settles it; otherwise the saved buffers do:
    official models save a shift mask in every shifted layer unless trained on inputs no larger
    than one window, and a position index in every layer. With neither, shifted windows are
    assumed and ``inferred["shift"]`` says so.

    Args:
        sd: the state dict.
        meta: traiNNer-redux metadata.
        window: the window side.
        mask_key: the shift mask a shifted layer would save; None where no layer can shift.
        index_key: the relative-position index a layer would save.
        inferred: what was guessed, by field.
    """
    img_size = meta_int(meta, "img_size", min=1, max=MAX_IMG_SIZE)
    if img_size is not None:
        return img_size > window
    if mask_key is None or mask_key in sd:
        return True
    if index_key in sd:
        return False  # buffers were saved, the mask was not: no shifted windows
    inferred["shift"] = "no saved buffers; assumed shifted windows as in every official config"
    return True
