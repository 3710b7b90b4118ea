"""oneDNN linear (arch/common/linear.py): only the op's own "cannot run here" errors switch the
process to F.linear; any other RuntimeError (out of memory above all) reaches the caller and
leaves oneDNN on (issue 18, section 4). The errors are the real ones, raised by the real op or
allocator, not hand-written messages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from srt.arch.common import linear as linear_mod
from srt.arch.common.linear import linear

REAL = torch.ops.mkldnn._linear_pointwise


def _out_of_memory(x, w, b, *args):
    torch.empty(1 << 50)  # 4 PiB: the CPU allocator refuses at once


# Genuine errors of the real op where it cannot run: a changed signature, a fusion this build
# lacks, no oneDNN primitive (a shape no kernel takes stands in for a CPU without one).
UNSUPPORTED = {
    "signature": lambda x, w, b, *args: REAL(x, w, b, *args, 7),
    "fusion": lambda x, w, b, attr, *args: REAL(x, w, b, "no_such_fusion", *args),
    "primitive": lambda x, w, b, *args: REAL(x[:, :-1], w, b, *args),
}


@pytest.fixture
def op(monkeypatch):
    """Install a stand-in for the oneDNN op; oneDNN starts enabled; counts its calls."""
    calls = {"n": 0}

    def install(fn):
        def counted(*args):
            calls["n"] += 1
            return fn(*args)

        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", counted)
        return calls

    monkeypatch.setattr(linear_mod, "_onednn_ok", True)
    return install


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.rand(5, 8, generator=g), torch.rand(3, 8, generator=g), torch.rand(3, generator=g)


def test_out_of_memory_propagates_and_keeps_onednn(op):
    calls = op(_out_of_memory)
    x, w, b = _inputs()
    with torch.inference_mode():
        for _ in range(2):
            with pytest.raises(RuntimeError, match="can't allocate memory"):
                linear(x, w, b)
    assert linear_mod._onednn_ok is True and calls["n"] == 2  # the second call tried oneDNN again


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_unsupported_op_switches_to_f_linear(op, kind):
    calls = op(UNSUPPORTED[kind])
    x, w, b = _inputs()
    with torch.inference_mode():
        for gelu in (False, True):
            expected = F.linear(x, w, b)
            assert torch.equal(linear(x, w, b, gelu=gelu), F.gelu(expected) if gelu else expected)
    assert linear_mod._onednn_ok is False and calls["n"] == 1  # not tried again


def test_onednn_is_used_when_it_works(op):
    calls = op(REAL)
    x, w, b = _inputs()
    with torch.inference_mode():
        out = linear(x, w, b)
    assert calls["n"] == 1 and linear_mod._onednn_ok is True
    assert float((out - F.linear(x, w, b)).abs().max()) <= 1e-5 * float(out.abs().max())
