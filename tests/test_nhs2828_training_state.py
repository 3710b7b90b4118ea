"""nhs2828's training script pickles a whole ``State`` (model.RGT + optimizer + scheduler).

We rebuild such a file the way its ``train.py`` writes it (classes named ``__main__.State`` and
``model.RGT``), remove those classes from the interpreter, and load it through the public loader:
the restricted unpickler must extract the weights without importing ``model`` or running code.
"""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
from torch import nn

from srt.arch import load_model


def _module_tree(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """An nn.Module whose attribute tree has exactly the keys of ``state_dict``."""
    root = nn.Module()
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        if leaf in ("rpe_biases", "relative_position_index"):
            mod.register_buffer(leaf, value.clone())
        else:
            mod.register_parameter(leaf, nn.Parameter(value.clone()))
    return root


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def state_file(tmp_path, oracle):
    sd = oracle.make_state_dict("nhs2828_RGT_x2")
    marker = tmp_path / "payload_ran"

    # Classes named as nhs2828's train.py names them: __main__.State and model.RGT.
    rgt_cls = type("RGT", (nn.Module,), {"__module__": "model"})
    state_cls = type("State", (), {"__module__": "__main__"})
    fake_model_module = types.ModuleType("model")
    fake_model_module.RGT = rgt_cls
    main = sys.modules["__main__"]
    sys.modules["model"] = fake_model_module
    main.State = state_cls
    try:
        net = _module_tree(sd)
        net.__class__ = type("RGT", (rgt_cls,), {"__module__": "model", "__qualname__": "RGT"})
        fake_model_module.RGT = net.__class__
        state = state_cls()
        state.model = net
        state.optim = torch.optim.Adam(net.parameters())
        state.scheduler = torch.optim.lr_scheduler.StepLR(state.optim, 100)
        state.iteration = 1234
        state.payload = _Payload(str(marker))
        path = tmp_path / "RGT.plt"
        torch.save(state, path)
    finally:
        del sys.modules["model"]
        del main.State
    return path, sd, marker


def test_pickled_state_loads_as_nhs2828_rgt_without_running_code(state_file):
    path, sd, marker = state_file
    desc = load_model(path)
    assert "model" not in sys.modules  # nothing was imported to read it
    assert not marker.exists()  # the payload never ran
    assert desc.architecture.id == "RGT_nhs2828"
    assert desc.srt_info.variant == "RGT (nhs2828 unofficial)"
    assert desc.scale == 2
    loaded = desc.model.state_dict()
    learned = {k: v for k, v in sd.items() if not k.endswith(("rpe_biases", "relative_position_index"))}
    assert set(learned) <= set(loaded)
    for k, v in learned.items():
        assert torch.equal(loaded[k], v), k
