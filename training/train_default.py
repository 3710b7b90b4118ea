"""Train one of the default models; resumable and deterministic (one CPU thread, seeded).

    python -m training.train_default --scale 2              # resumes where the run stopped
    python -m training.train_default --scale 4              # fine-tunes x2's step-200 EMA weights
    python -m training.train_default --scale 2 --steps 600  # stop after step 600
    python -m training.train_default --scale 2 --ship       # copy the run's EMA weights to weights/

Recipe: L1 loss; Adam (0.9, 0.99), peak rate :data:`PEAK_LR` after a 100-step warm-up, then
cosine decay (:data:`CYCLES`, :func:`learning_rate`; more cycles would restart it); batches of
:data:`BATCH` LR patches (48 px at x2, 32 px at x4; random crop, flips, rot90) from
:mod:`training.data`'s photos, bicubic degradation;
the EMA of the weights is what is exported. Step 0 sets the pixelshuffledirect head by least
squares (:func:`training.recipe.fit_readout`); x4 starts from the x2 model's EMA weights at step
:data:`X4_START` (all but the head), so it can run beside the rest of the x2 run.

Every ``--every`` steps the run writes ``training/runs/x<scale>/latest.pt`` (model, EMA,
optimiser, sampler state) and the EMA weights as ``ema.safetensors``; starting the command
again continues from there, drawing the same batches an uninterrupted run would. One step takes
about 0.5 s (x2) or 0.4 s (x4) on one free core.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from . import RUNS, import_pack
from .data import PatchSampler, training_images
from .recipe import build_model, fit_readout, save_official, shipped_path

SEED = 2024
# Cosine cycles with warm restarts (SGDR): each cycle ends at the step given. x4 runs a second
# cycle: it learns more slowly per step (a quarter of the pixels per patch) and its first cycle
# ended just at the target (+0.50 dB); a step takes half as long, so both end together.
CYCLES = {2: (7000,), 4: (7000, 14000)}
LR_SIZE = {2: 48, 4: 32}  # x4: 128 px HR patches fit every training photo (text is 172 px)
BATCH = 8
X4_START = 200  # x4 fine-tunes the x2 EMA weights of this step (so both can train at once)
PEAK_LR = {2: 4e-4, 4: 4e-4}


def run_dir(scale: int) -> str:
    return os.path.join(RUNS, f"x{scale}")


def x2_start_file() -> str:
    return os.path.join(run_dir(2), f"ema_step{X4_START}.safetensors")


def learning_rate(step: int, cycles: tuple[int, ...], peak: float, floor: float = 0.02) -> float:
    """The rate at ``step``: in each cycle a linear warm-up (100 steps in the first, 50 after a
    restart, from ``floor * peak``), then cosine from ``peak`` down to ``floor * peak``."""
    start = 0
    for end in cycles:
        if step < end:
            break
        start = end
    else:
        return floor * peak
    warmup = 100 if start == 0 else 50
    if step - start < warmup:
        low = 0.0 if start == 0 else floor
        return peak * (low + (1 - low) * (step - start + 1) / warmup)
    t = (step - start - warmup) / max(1, end - start - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def optimizer(model: torch.nn.Module, scale: int) -> torch.optim.Adam:
    """Adam (0.9, 0.99), one rate for every parameter (set per step by :func:`learning_rate`)."""
    return torch.optim.Adam(model.parameters(), lr=PEAK_LR[scale], betas=(0.9, 0.99))


class EMA:
    """Exponential moving average of a model's parameters (buffers copied), BasicSR's params_ema."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short memory early on
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                self.state[k].copy_(v)


def start_model(scale: int, sampler_seed: int) -> torch.nn.Module:
    """Step-0 model: official init (x2) or the trained x2 trunk (x4), head fitted by least squares."""
    model = build_model(scale)
    if scale != 2:
        x2 = x2_start_file()
        if not os.path.isfile(x2):
            raise SystemExit(f"{x2} not found: train x2 first (python -m training.train_default --scale 2)")
        from safetensors.torch import load_file

        trunk = {k: v for k, v in load_file(x2).items() if not k.startswith("upsample.")}
        trunk.pop("relative_position_index_SA", None)
        missing, unexpected = model.load_state_dict(trunk, strict=False)
        assert not unexpected and all(k.startswith("upsample.") for k in missing), (missing, unexpected)
    model.exact_fp32 = False  # autograd: SDPA attention
    fit_sampler = PatchSampler(
        [img for _, img in training_images()], scale, LR_SIZE[scale], BATCH, seed=sampler_seed
    )
    err = fit_readout(model, [fit_sampler.next() for _ in range(4)])
    print(f"x{scale}: head fitted by least squares, L1 {err:.4f}", flush=True)
    return model


def save_checkpoint(path: str, **state) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(scale: int, steps: int, every: int) -> None:
    folder = run_dir(scale)
    os.makedirs(folder, exist_ok=True)
    latest = os.path.join(folder, "latest.pt")
    sampler = PatchSampler(
        [img for _, img in training_images()], scale, LR_SIZE[scale], BATCH, seed=SEED + scale
    )
    if os.path.isfile(latest):
        ckpt = torch.load(latest, map_location="cpu", weights_only=True)
        model = build_model(scale)
        model.load_state_dict(ckpt["model"])
        model.exact_fp32 = False
        ema = EMA(model, 0.995)
        ema.state = ckpt["ema"]
        opt = optimizer(model, scale)
        opt.load_state_dict(ckpt["optimizer"])
        sampler.restore(ckpt["sampler"])
        step, elapsed = ckpt["step"], ckpt["elapsed_s"]
        print(f"x{scale}: resumed at step {step} ({elapsed / 60:.0f} min trained)", flush=True)
    else:
        model = start_model(scale, sampler_seed=SEED + 100 + scale)
        ema = EMA(model, 0.995)
        opt = optimizer(model, scale)
        step, elapsed = 0, 0.0
    model.train()
    loss_sum, t0 = 0.0, time.perf_counter()
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, CYCLES[scale], PEAK_LR[scale])
        lr_img, hr = sampler.next()
        loss = (model(lr_img) - hr).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ema.update(model, step)
        loss_sum += loss.item()
        if scale == 2 and step == X4_START:  # the x4 run starts from these weights
            save_official(model, x2_start_file(), ema.state, _provenance(step, elapsed))
        if step % every == 0 or step == steps:
            now = time.perf_counter()
            elapsed += now - t0
            n = every if step % every == 0 else step % every
            print(
                f"x{scale} step {step}/{steps} L1 {loss_sum / n:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{(now - t0) / n:.2f} s/step, {elapsed / 60:.1f} min",
                flush=True,
            )
            save_checkpoint(
                latest, model=model.state_dict(), ema=ema.state, optimizer=opt.state_dict(),
                sampler=sampler.state(), step=step, elapsed_s=elapsed,
            )  # fmt: skip
            save_official(
                model, os.path.join(folder, "ema.safetensors"), ema.state, _provenance(step, elapsed)
            )
            loss_sum, t0 = 0.0, time.perf_counter()
    print(f"x{scale}: done, {step} steps", flush=True)


def _provenance(step: int, elapsed: float) -> dict:
    return {"made_by": "training/train_default.py", "steps": step, "train_minutes": round(elapsed / 60, 1)}


def ship(scale: int) -> None:
    """Copy the run's EMA weights to ``weights/`` (what the repository tracks)."""
    import shutil

    src = os.path.join(run_dir(scale), "ema.safetensors")
    shutil.copyfile(src, shipped_path(scale))
    print(f"shipped {src} -> {shipped_path(scale)} ({os.path.getsize(src) / 2**20:.2f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, choices=(2, 4), required=True)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="stop after this many steps in all (default: the end of the last cycle); the schedule does not depend on it",
    )
    parser.add_argument("--every", type=int, default=25, help="checkpoint every N steps")
    parser.add_argument("--ship", action="store_true", help="copy the EMA weights to weights/ and stop")
    args = parser.parse_args()
    import_pack()
    if args.ship:
        ship(args.scale)
        return
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    train(args.scale, args.steps or CYCLES[args.scale][-1], args.every)


if __name__ == "__main__":
    main()
