"""fp32 means IEEE float32: a run in fp32 turns TF32 off (cuBLAS matmuls, cuDNN convolutions) and puts
the caller's settings back afterwards (engine/precision.py ``ieee_fp32``). These are process-wide
settings that torch keeps on any build, so they are checked on the CPU."""

from __future__ import annotations

import pytest
import torch
from engine_models import PerPixel, wrap

from srt.engine.precision import _PER_OP, ieee_fp32
from srt.engine.runner import Host, Settings, upscale

B = torch.backends


PER_OP = ("cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv")


def _op(name: str):
    backend, op = name.split(".")
    return getattr(getattr(B, backend), op)


def _get(getter):
    try:
        return getter()
    except RuntimeError:  # torch refuses to read a legacy flag after a mix of both APIs
        return "unreadable"


def settings() -> dict:
    """Every TF32-related setting as torch reports it."""
    state = {
        "matmul precision": _get(torch.get_float32_matmul_precision),
        "matmul.allow_tf32": _get(lambda: B.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": _get(lambda: B.cudnn.allow_tf32),
    }
    if _PER_OP:
        state["generic"] = B.fp32_precision
        state |= {name: _op(name).fp32_precision for name in PER_OP}
    return state


@pytest.fixture(autouse=True)
def restore_settings():
    """Whatever a test sets, the next one starts from the settings this one started with."""
    matmul, cudnn = torch.get_float32_matmul_precision(), B.cudnn.allow_tf32
    raw = {name: _op(name).fp32_precision for name in PER_OP} if _PER_OP else {}
    generic = B.fp32_precision if _PER_OP else None
    yield
    torch.set_float32_matmul_precision(matmul)
    B.cudnn.allow_tf32 = cudnn
    if _PER_OP:
        B.fp32_precision = generic
        for name, value in raw.items():
            _op(name).fp32_precision = value


def _legacy_on():
    B.cuda.matmul.allow_tf32 = True
    B.cudnn.allow_tf32 = True


def _per_op_tf32():  # PyTorch >= 2.9 style; leaves the legacy flags unreadable
    B.cuda.matmul.fp32_precision = "tf32"
    B.cudnn.conv.fp32_precision = "tf32"


def _generic_tf32():
    B.fp32_precision = "tf32"


USER_SETTINGS = {
    "defaults": lambda: None,
    "legacy flags on": _legacy_on,
    "matmul precision high": lambda: torch.set_float32_matmul_precision("high"),
    "cudnn off": lambda: setattr(B.cudnn, "allow_tf32", False),
}
if _PER_OP:
    USER_SETTINGS |= {"per-operation tf32": _per_op_tf32, "generic tf32": _generic_tf32}


def _assert_ieee() -> None:
    assert B.cuda.matmul.allow_tf32 is False and B.cudnn.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    if _PER_OP:
        ops = (B.cuda.matmul, B.cudnn.conv, B.mkldnn.matmul, B.mkldnn.conv)
        assert {op.fp32_precision for op in ops} == {"ieee"}


@pytest.mark.parametrize("user", USER_SETTINGS)
def test_ieee_fp32_inside_and_the_users_settings_after(user):
    USER_SETTINGS[user]()
    before = settings()
    with ieee_fp32():
        _assert_ieee()
    assert settings() == before


def test_settings_come_back_when_the_run_fails():
    _legacy_on()
    before = settings()
    with pytest.raises(KeyError), ieee_fp32():
        raise KeyError("a failing run")
    assert settings() == before


class RecordsTF32(PerPixel):
    """Records, per call, whether TF32 was allowed for cuDNN convolutions and cuBLAS matmuls."""

    def __init__(self) -> None:
        super().__init__(2)
        self.tf32: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.tf32.append((B.cudnn.allow_tf32, B.cuda.matmul.allow_tf32))
        return super().forward(x)


@pytest.mark.parametrize(("precision", "ieee"), [("fp32", True), ("bf16", False)])
def test_a_fp32_run_computes_in_ieee_fp32_and_a_half_run_keeps_the_settings(precision, ieee):
    _legacy_on()
    before = settings()
    model = RecordsTF32()
    result = upscale(wrap(model, 2), torch.rand(1, 24, 24, 3), Settings(tile=16, precision=precision), Host())
    assert result.report.dtype == (torch.float32 if ieee else torch.bfloat16)
    assert model.tf32 == [(not ieee, not ieee)] * result.report.tiles_run
    assert settings() == before


def test_atd_exact_path_only_where_fp32_is_ieee():
    """ATD's official-arithmetic path is used where float32 is IEEE: the CPU, or CUDA with TF32 off
    (the engine's fp32 runs); under TF32 no op order reproduces the official output, so SDPA."""
    from srt.arch.atd.attention import ieee_float32

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    _legacy_on()
    assert ieee_float32(cpu) and not ieee_float32(cuda)
    with ieee_fp32():
        assert ieee_float32(cuda)
    if _PER_OP:
        _per_op_tf32()  # mixed settings: torch cannot say, so not exact
        assert not ieee_float32(cuda)


def test_atd_takes_the_fast_path_where_fp32_is_not_ieee(monkeypatch):
    from srt.arch.atd import attention, model, windows
    from srt.arch.atd.config import ATDConfig

    exact_calls, reference = [], attention.reference_attention

    def counted(*args, **kwargs):
        exact_calls.append(1)
        return reference(*args, **kwargs)

    monkeypatch.setattr(attention, "reference_attention", counted, raising=True)
    monkeypatch.setattr(windows, "reference_attention", counted, raising=True)
    cfg = ATDConfig(
        embed_dim=12,
        depths=(1,),
        num_heads=(2,),
        window_size=4,
        category_size=16,
        num_tokens=8,
        reducted_dim=4,
        scale=2,
    )
    atd = model.ATD(cfg).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        atd(x)
        assert len(exact_calls) == 2, "IEEE float32 (the CPU): window and category attention exact"
        monkeypatch.setattr(model, "ieee_float32", lambda device: False)
        atd(x)
    assert len(exact_calls) == 2, "float32 that is not IEEE (CUDA with TF32): SDPA"
