"""Images that ship inside Python packages, the bicubic degradation, and training patches.

* Training: scikit-image's ``skimage.data`` photos (colour, and grey ones replicated to RGB) and
  two flat-colour graphics (``logo``, ``colorwheel``) -- never ``astronaut``, ``chelsea`` or
  ``coffee``, which the tests crop. Colour augmentation (:class:`PatchSampler`): grey patches are
  tinted with a random colour half of the time, and every patch's channels are permuted at
  random, so saturated and flat colours (cartoons, graphics) are seen often enough that flat
  areas come out without a colour offset.
* Held out (evaluation only, never trained on): scikit-learn's two sample photos, ``china.jpg``
  and ``flower.jpg`` (``sklearn.datasets.load_sample_images``).
* Degradation: bicubic downscale, antialiased like MATLAB's ``imresize`` (PyTorch's
  ``F.interpolate(mode="bicubic", antialias=True)``, Keys a = -0.5), clamped and rounded to
  8 bits, as a low-resolution image saved to disk would be.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

COLOUR_TRAIN = (
    "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina", "logo", "colorwheel",
)  # fmt: skip
GREY_TRAIN = ("camera", "moon", "brick", "grass", "gravel", "coins", "page", "text")
TEST_CROPPED = ("astronaut", "chelsea", "coffee")  # the tests' photos: never trained on
HELD_OUT = ("china", "flower")


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W[, C])`` uint8 -> ``(3, H, W)`` float32 in [0, 1] (grey replicated to RGB)."""
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return torch.from_numpy(np.array(img[..., :3], copy=True)).permute(2, 0, 1).float() / 255.0


def training_images() -> list[tuple[str, torch.Tensor]]:
    """The training photos, ``(name, (3, H, W) float in [0, 1])``; the stereo pair gives two."""
    from skimage import data

    out = []
    for name in COLOUR_TRAIN + GREY_TRAIN:
        assert name not in TEST_CROPPED
        loaded = getattr(data, name)()
        if name == "stereo_motorcycle":  # (left, right, disparity)
            out += [("motorcycle_left", _to_tensor(loaded[0])), ("motorcycle_right", _to_tensor(loaded[1]))]
        else:
            out.append((name, _to_tensor(loaded)))
    return out


def held_out_images() -> list[tuple[str, torch.Tensor]]:
    """scikit-learn's sample photos (``china``, ``flower``): evaluation only."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    names = [path.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0] for path in bunch.filenames]
    assert tuple(names) == HELD_OUT, names
    return [(name, _to_tensor(img)) for name, img in zip(names, bunch.images, strict=True)]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels."""
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


def crop_to_multiple(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop ``(..., H, W)`` bottom/right so both sides divide by ``scale``."""
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> 8-bit-quantised antialiased bicubic downscale by ``scale``."""
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    return quantize(lr)


class PatchSampler:
    """Seeded random HR patches (image picked uniformly, random crop, flips / rot90) and their LR.

    Its whole state is one ``torch.Generator``: :meth:`state` / :meth:`restore` make a resumed
    run draw exactly the batches an uninterrupted one would.
    """

    def __init__(self, images: list[torch.Tensor], scale: int, lr_size: int, batch: int, seed: int) -> None:
        self.images, self.scale, self.lr_size, self.batch = images, scale, lr_size, batch
        self.gen = torch.Generator().manual_seed(seed)

    def _int(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.gen))

    def _patch(self) -> torch.Tensor:
        size = self.lr_size * self.scale
        img = self.images[self._int(len(self.images))]
        top, left = self._int(img.shape[1] - size + 1), self._int(img.shape[2] - size + 1)
        patch = img[:, top : top + size, left : left + size]
        if self._int(2):
            patch = patch.flip(-1)
        patch = torch.rot90(patch, self._int(4), dims=(-2, -1))
        return self._recolour(patch)

    def _recolour(self, patch: torch.Tensor) -> torch.Tensor:
        """Tint a grey patch (half of the time), then permute the channels at random."""
        grey = bool((patch[0] == patch[1]).all() and (patch[1] == patch[2]).all())
        if grey and self._int(2):
            tint = 0.2 + 0.8 * torch.rand(3, 1, 1, generator=self.gen)
            patch = patch * (tint / tint.max())
        return patch[torch.randperm(3, generator=self.gen)]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``(lr, hr)`` batch: ``(B, 3, s, s)`` and ``(B, 3, s * scale, s * scale)``."""
        hr = torch.stack([self._patch() for _ in range(self.batch)]).contiguous()
        return bicubic_down(hr, self.scale), hr

    def state(self) -> torch.Tensor:
        return self.gen.get_state()

    def restore(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)
