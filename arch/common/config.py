"""The vocabulary every family's config shares, and reading it from shapes.

Each family's ``config.py`` holds a frozen dataclass derived from :class:`ModelConfig` and a
``read_config(state_dict, metadata) -> (config, inferred)``. Shared fields mean the same thing in
every family (as timm's ``model_args``); family-specific ones are added by each subclass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Fields every family has.

    Args:
        scale: upscaling factor (1 for restoration models without an upsampler).
        in_chans: image channels of the input.
        embed_dim: token channels of the body.
        num_heads: attention heads, one entry per residual group.
        mlp_ratio: MLP hidden width over ``embed_dim`` (``int(embed_dim * mlp_ratio)`` channels).
    """

    scale: int = 4
    in_chans: int = 3
    embed_dim: int = 180
    num_heads: tuple[int, ...] = (6,) * 6
    mlp_ratio: float = 2.0

    @property
    def num_groups(self) -> int:
        """Residual groups of the body."""
        return len(self.num_heads)

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the blocks' MLPs (``int(embed_dim * mlp_ratio)``)."""
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def out_chans(self) -> int:
        """Image channels of the output."""
        return self.in_chans

    @property
    def variant(self) -> str:
        """Release name (``"RGT-S"``, ``"DRCT-L"``, ``"ATD-light"``) or ``"<family> (custom)"``."""
        raise NotImplementedError

    @property
    def notes(self) -> list[str]:
        """Lines worth showing the user about this config (none by default)."""
        return []


def exact_ratio(channels: int, dim: int) -> float:
    """The float ``r`` nearest ``channels / dim`` with ``int(dim * r) == channels``, as the models
    compute widths from ratios (``channels / dim`` alone can round one channel short)."""
    r = channels / dim
    while int(dim * r) < channels:
        r = math.nextafter(r, math.inf)
    return r
