"""Helpers the ATD tests share: recording (or replaying) the token categories of every layer."""

from __future__ import annotations

import contextlib

import torch

from srt.arch.atd import attention as atd_attention


@contextlib.contextmanager
def categories(replay: list[torch.Tensor] | None = None):
    """Record every layer's token categories and order (or replay given orders)."""
    record: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = atd_attention.category_order
    pending = list(replay) if replay is not None else None

    def patched(sim: torch.Tensor, stable: bool = False) -> torch.Tensor:
        order = pending.pop(0) if pending else original(sim, stable)
        record.append((sim.argmax(dim=-1), order))
        return order

    atd_attention.category_order = patched
    try:
        yield record
    finally:
        atd_attention.category_order = original
