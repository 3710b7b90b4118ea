"""What the default models are: the architecture config, their start, and the shipped file.

The config is a tiny ATD ("ATD-tiny": embed 24, one residual group of two layers, 2 heads,
window 8, 32 tokens, reduced dim 4, ConvFFN kernel 5, mlp 2, pixelshuffledirect; ~33 k
parameters), small enough that one CPU core takes ~0.3 s per training step, so an hour gives
it thousands of steps. Two layers per group at least: the last layer of a group has no
token-dictionary update (no ``sigma``/``norm3``), and spandrel's detector requires them in layer 0. Every hyperparameter the weights cannot reveal is the value that spandrel
and our detector infer for it (category 256, as for every ATD but embed-48 ATD-light;
img_range 1), and the file carries the official key layout, so spandrel, traiNNer-redux, neosr
and the official code load it as they load the official ATD checkpoints.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from . import WEIGHTS, import_pack

ARCH = dict(
    in_chans=3, embed_dim=24, depths=(2,), num_heads=(2,), window_size=8,
    category_size=256, num_tokens=32, reducted_dim=4, convffn_kernel_size=5, mlp_ratio=2.0,
    qkv_bias=True, patch_norm=True, img_range=1.0, upsampler="pixelshuffledirect",
    resi_connection="1conv", norm=True,
)  # fmt: skip
NAME = "SRT_ATD-tiny_x{scale}"


def shipped_path(scale: int) -> str:
    return os.path.join(WEIGHTS, NAME.format(scale=scale) + ".safetensors")


def build_model(scale: int) -> nn.Module:
    """Our ATD with :data:`ARCH` at ``scale``, official initialisation (tests/model_helpers.py), seed 0."""
    import_pack()
    from srt.arch.atd import ATD, ATDConfig
    from srt.tests.model_helpers import official_init

    model = ATD(ATDConfig(scale=scale, **ARCH))
    official_init(model, seed=0)
    return model


def upsampler_input(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """The deep features the final ``upsample`` conv reads for ``lr`` (no grad)."""
    seen = []
    handle = model.upsample.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(lr)
    finally:
        handle.remove()
    return seen[0]


def fit_readout(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], ridge: float = 1e-3
) -> float:
    """Set the ``upsample.0`` conv (3x3, features -> 3 * scale^2) by ridge regression on ``batches``.

    The pixelshuffledirect head is linear in the deep features, so its best value for a given
    trunk is a least-squares problem: solving it gives the run a start at least as good as the
    best linear 5x5 filter, instead of a random image. Used at step 0 of both scales (the x4
    model's trunk comes from the trained x2 model). Returns the fitted L1 error on ``batches``.
    """
    conv, scale = model.upsample[0], model.scale
    rows, targets = [], []
    for lr, hr in batches:
        feats = torch.nn.functional.unfold(upsampler_input(model, lr), 3, padding=1)  # B, C*9, h*w
        rows.append(feats.permute(0, 2, 1).reshape(-1, feats.shape[1]))
        target = torch.nn.functional.pixel_unshuffle(hr - model.mean, scale) * model.img_range
        targets.append(target.flatten(2).permute(0, 2, 1).reshape(-1, target.shape[1]))
    x = torch.cat(rows).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = torch.cat(targets).double()
    gram = x.T @ x
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    solution = torch.linalg.solve(gram, x.T @ y)  # (C*9 + 1, 3 * scale^2)
    with torch.no_grad():
        conv.weight.copy_(solution[:-1].T.reshape(conv.weight.shape).float())
        conv.bias.copy_(solution[-1].float())
    return float((x @ solution - y).abs().mean())


def hyperparameters(scale: int) -> dict:
    """Constructor arguments as traiNNer-redux stores them (official ATD names)."""
    lists = {k: list(v) if isinstance(v, tuple) else v for k, v in ARCH.items()}
    return dict(img_size=64, patch_size=1, ape=False, upscale=scale, **lists)


def save_official(model: nn.Module, path: str, state: dict | None = None, extra: dict | None = None) -> None:
    """Write ``state`` (default: ``model``'s) as .safetensors in the official ATD key layout,
    with traiNNer-redux-style metadata (``{"metadata": <hyperparameters JSON>}``) plus ``extra``."""
    import_pack()
    from safetensors.torch import save_file

    from srt.tests.atd_weights import official_layout

    layout = official_layout(model)
    if state is not None:
        layout.update({k: v.detach().contiguous() for k, v in state.items()})
    metadata = {"metadata": json.dumps(hyperparameters(model.scale))}
    metadata.update({k: str(v) for k, v in (extra or {}).items()})
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    save_file(layout, tmp, metadata=metadata)
    os.replace(tmp, path)
