"""ATD weights that behave like real ones, for the half-precision tests.

* ``python tests/atd_weights.py`` — rebuilds ``tests/assets/ATD_light_x2_trained.safetensors``:
  ATD-light x2 from the official training's initialisation (``model_helpers.official_init``),
  trained with L1 on bicubic x2 pairs cut from scikit-image photos that the tests never crop
  (rocket, immunohistochemistry, retina, hubble deep field). 600 Adam steps, batch 4, 32 px
  inputs: about 12 minutes on two CPU cores, deterministic for a given torch build. It is a small,
  briefly trained model — not a good upscaler, but its weights have the scale and structure
  training gives, unlike the oracle's random recipe.

Run from the repository root (the checkout is imported as ``srt``, as the tests do).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
TRAINED = os.path.join(ASSETS, "ATD_light_x2_trained.safetensors")
TRAIN_IMAGES = ("rocket", "immunohistochemistry", "retina", "hubble_deep_field")


def official_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights with the buffer the official ATD also saves (``relative_position_index_SA``,
    which ours rebuilds instead of storing), so the official code and spandrel load the file strictly."""
    from srt.arch.common.position import relative_position_index

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["relative_position_index_SA"] = relative_position_index(model.window_size, model.window_size)
    return state


def _photos() -> list[torch.Tensor]:
    from skimage import data

    out = []
    for name in TRAIN_IMAGES:
        img = getattr(data, name)()[..., :3].astype(np.float32) / 255.0
        out.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
    return out


def train(model: torch.nn.Module, steps: int = 600, batch: int = 4, size: int = 32, lr: float = 4e-4) -> None:
    """L1 training on bicubic pairs (in place); ``model.exact_fp32`` off: autograd needs SDPA."""
    photos = _photos()
    gen = torch.Generator().manual_seed(1)
    scale = model.scale
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    model.exact_fp32 = False
    hr_size = size * scale
    for step in range(steps):
        crops = []
        for _ in range(batch):
            img = photos[int(torch.randint(len(photos), (1,), generator=gen))]
            top = int(torch.randint(img.shape[1] - hr_size, (1,), generator=gen))
            left = int(torch.randint(img.shape[2] - hr_size, (1,), generator=gen))
            crops.append(img[:, top : top + hr_size, left : left + hr_size])
        hr = torch.stack(crops)
        lr_img = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True).clamp(0, 1)
        loss = (model(lr_img) - hr).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step} L1 {loss.item():.4f}", flush=True)
    model.eval()
    model.exact_fp32 = True


def main() -> None:
    from model_helpers import load_oracle, official_init, register_pack  # a script: tests/ is on sys.path
    from safetensors.torch import save_file

    register_pack()
    oracle = load_oracle()  # ../shared/oracle/weights.py: only for the official key layout
    from srt.arch import load_state_dict

    torch.set_num_threads(2)
    model = load_state_dict(oracle.make_state_dict("ATD_light_x2")).model
    official_init(model)
    train(model)
    os.makedirs(ASSETS, exist_ok=True)
    save_file(
        official_layout(model),
        TRAINED,
        metadata={"made_by": "tests/atd_weights.py", "images": ",".join(TRAIN_IMAGES)},
    )
    print("wrote", TRAINED)


if __name__ == "__main__":
    main()
