"""ATD: Adaptive Token Dictionary super-resolution transformer (Zhang et al., CVPR 2024).

Inference-only re-implementation with the official state-dict layout. Saved derived buffers
(``relative_position_index_SA``) are accepted and ignored; masks and position biases are built
once per (input size, device, dtype) on the device. neosr's ``no_norm`` buffer (skip the RGB-mean
normalisation) is kept so such checkpoints load strictly and run as trained.

Reproducibility: ATD assigns every token to the dictionary entry it is most similar to and
attends within groups of sorted tokens. On the CPU in float32 we reproduce the official output
(same arithmetic, same unstable sort). On other devices ties are grouped in token order (a
stable sort), so results are deterministic per device but differ from the CPU's by up to ~0.4
max abs, as the official code's do; bf16/fp16 also move a few near-tied tokens to another
category (see tests/test_atd.py for measured rates).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.cache import attach_geometry_cache, cache_key, use_cache
from ..common.residual import residual_conv
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.upsample import PixelShuffleDirect, PixelShuffleUpsample
from ..common.windows import relative_position_index
from .attention import build_window_geometry
from .blocks import LayerInputs, ResidualGroup, image_to_tokens, tokens_to_image

RGB_MEAN = (0.4488, 0.4371, 0.4040)
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")


def mirror_pad(x: Tensor, multiple: int) -> Tensor:
    """Pad H and W up to a multiple by appending the mirrored image (the official padding),
    repeated when the image is smaller than the padding."""
    for dim in (2, 3):
        target = -(-x.shape[dim] // multiple) * multiple
        while x.shape[dim] < target:
            x = torch.cat([x, x.flip(dim)], dim)
        x = x.narrow(dim, 0, target)
    return x


class PatchEmbed(nn.Module):
    """Image -> tokens, with the optional LayerNorm of ``patch_norm`` (key ``patch_embed.norm``)."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(self, x: Tensor, stream: torch.dtype) -> Tensor:
        """Tokens of ``x`` in the ``stream`` dtype."""
        tokens = image_to_tokens(x).to(stream)
        return tokens if isinstance(self.norm, nn.Identity) else norm_to(self.norm, tokens, stream)


class ATD(nn.Module):
    """ATD / ATD-light.

    Args:
        in_chans: image channels (output has as many).
        embed_dim: token channels.
        depths: layers per residual group.
        num_heads: heads per residual group.
        window_size: attention window side (inputs are mirror-padded to a multiple of it).
        category_size: tokens per AC-MSA group (not stored in weights: 256 ATD, 128 ATD-light).
        num_tokens: token-dictionary entries.
        reducted_dim: TDCA query/key channels.
        convffn_kernel_size: depthwise kernel of the ConvFFN.
        mlp_ratio: ConvFFN hidden ratio.
        qkv_bias: biases on the qkv projections.
        patch_norm: LayerNorm after the patch embedding.
        upscale: scale factor (1 for the restoration variant without upsampler).
        img_range: input multiplier after mean subtraction.
        upsampler: ``pixelshuffle``, ``pixelshuffledirect``, ``nearest+conv`` (x4) or ``""``.
        resi_connection: ``1conv`` or ``3conv``.
        norm: subtract the RGB mean (False for neosr's ``no_norm`` checkpoints).

    Attributes:
        exact_fp32: in float32, use the official arithmetic (explicit softmax attention, run
            in cache-sized chunks on the CPU) instead of SDPA, so the token categories, which
            flip on 1-ulp differences, match the official code on the same device. Half
            precision always uses SDPA.
        fp32_stream: under bf16/fp16 weights, carry the residual stream (and the norms that read
            it) in float32, as autocast training does; the attentions, ConvFFN and convs run in
            the weights' dtype. No effect in float32.
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 210,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 16,
        category_size: int = 256,
        num_tokens: int = 128,
        reducted_dim: int = 20,
        convffn_kernel_size: int = 5,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        upscale: int = 4,
        img_range: float = 1.0,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        norm: bool = True,
    ) -> None:
        super().__init__()
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, not {upsampler!r}")
        if upsampler == "nearest+conv" and upscale != 4:
            raise ValueError(f"the nearest+conv upsampler is x4 only, not x{upscale}")
        self.window_size = window_size
        self.upscale = upscale
        self.upsampler = upsampler
        self.img_range = img_range
        self.exact_fp32 = True
        # carry the residual stream in float32 under half-precision weights (common/stream.py)
        self.fp32_stream = True
        mean = RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        if not norm:
            self.register_buffer("no_norm", torch.zeros(1))
        self.normalize = norm

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        layer_args = dict(
            window=window_size,
            category_size=category_size,
            reducted_dim=reducted_dim,
            kernel_size=convffn_kernel_size,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
        )
        self.layers = nn.ModuleList(
            ResidualGroup(
                depth, embed_dim, resi_connection, num_heads=heads, num_tokens=num_tokens, **layer_args
            )
            for depth, heads in zip(depths, num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)
        self._build_reconstruction(upsampler, upscale, embed_dim, in_chans, num_feat=64)
        self.geometry_cache = attach_geometry_cache(self)
        ignore_derived_buffers(self)

    def _build_reconstruction(self, upsampler: str, scale: int, dim: int, out_ch: int, num_feat: int) -> None:
        if upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
        if upsampler == "pixelshuffle":
            self.upsample = PixelShuffleUpsample(scale, num_feat)
        elif upsampler == "pixelshuffledirect":
            self.upsample = PixelShuffleDirect(scale, dim, out_ch)
        elif upsampler == "nearest+conv":
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        if upsampler != "pixelshuffledirect":
            self.conv_last = nn.Conv2d(num_feat if upsampler else dim, out_ch, 3, 1, 1)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Deep features (plus shallow skip) -> output image (before de-normalisation)."""
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(x)
        x = self.conv_before_upsample(x)
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(x))
        for conv in (self.conv_up1, self.conv_up2):  # nearest+conv: two nearest x2 steps
            x = self.lrelu(conv(F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(x)))

    # ------------------------------------------------------------------ geometry (cached)

    def _layer_inputs(self, x: Tensor, h: int, w: int) -> LayerInputs:
        def build():
            return build_window_geometry(h, w, self.window_size, x.device, x.dtype)

        key = cache_key("atd_window_geometry", x, h, w)
        geometry = self.geometry_cache.get(key, build) if use_cache(self) else build()
        exact = self.exact_fp32 and x.dtype == torch.float32
        return LayerInputs(size=(h, w), geometry=geometry, exact=exact, dtype=x.dtype)

    def _position_biases(self, x: Tensor) -> list[list[Tensor]]:
        """Per group, per layer ``(heads, N, N)`` biases in ``x``'s dtype on its device."""

        def build():
            index = relative_position_index(self.window_size, self.window_size, x.device)
            return tuple(
                tuple(
                    layer.attn_win.position_bias(index).to(x.dtype) for layer in group.residual_group.layers
                )
                for group in self.layers
            )

        if not use_cache(self):
            return build()
        return self.geometry_cache.get(cache_key("atd_position_bias", x), build)

    # ------------------------------------------------------------------ forward

    def forward_features(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        inp = self._layer_inputs(x, h, w)
        biases = self._position_biases(x)
        # the residual stream runs in float32 under half-precision weights (common/stream.py)
        tokens = self.patch_embed(x, stream_dtype(x.dtype, self.fp32_stream))
        for group, group_biases in zip(self.layers, biases, strict=True):
            tokens = group(tokens, group_biases, inp)
        return tokens_to_image(norm_to(self.norm, tokens, x.dtype), (h, w))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` in [0, 1] -> ``(B, C, H * scale, W * scale)`` (unclamped)."""
        h, w = x.shape[-2:]
        x = mirror_pad(x, self.window_size)
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) * self.img_range
        feat = self.conv_first(x)
        deep = self.conv_after_body(self.forward_features(feat)) + feat
        # restoration (no upsampler) predicts a residual of the input
        x = x + self.conv_last(deep) if self.upsampler == "" else self.reconstruct(deep)
        if self.normalize:
            x = x / self.img_range + self.mean.to(x.dtype)
        return x[..., : h * self.upscale, : w * self.upscale]
