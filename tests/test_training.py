"""The default models' training script (training/train_default.py): the schedule it documents,
and that a stopped run resumes to exactly the weights an uninterrupted run reaches."""

from __future__ import annotations

import itertools
import os

import pytest
import torch
from safetensors.torch import load_file

from srt.training import train_default as td


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cycles, peak = (1000,), 4e-4
    rates = [td.learning_rate(step, cycles, peak) for step in range(1100)]
    assert rates[0] == pytest.approx(peak / 100)  # linear warm-up from zero over 100 steps
    assert rates[99] == pytest.approx(peak)
    assert all(a >= b for a, b in itertools.pairwise(rates[100:1000]))  # cosine down
    assert rates[999] == pytest.approx(0.02 * peak, rel=1e-3) and rates[1050] == 0.02 * peak


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    torch.set_num_threads(1)

    def run(folder, *stops):
        monkeypatch.setattr(td, "RUNS", str(folder))
        for stop in stops:  # each call is a new start of the command, resuming from latest.pt
            torch.manual_seed(td.SEED)
            td.train(2, stop, every=2)
        return load_file(os.path.join(folder, "x2", "ema.safetensors"))

    whole = run(tmp_path / "whole", 4)
    resumed = run(tmp_path / "resumed", 2, 4)
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    half = run(tmp_path / "half", 2)  # and the steps after the stop did train
    assert any(not torch.equal(whole[k], half[k]) for k in whole)
