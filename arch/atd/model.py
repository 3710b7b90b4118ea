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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.embed import PatchEmbed
from ..common.image import image_mean, pad_to_multiple
from ..common.model import (
    UPSAMPLE_FEATURES,
    SideRange,
    SRModel,
    attention_elements,
    token_elements,
    upsampler_elements,
)
from ..common.position import relative_position_index
from ..common.residual import residual_conv
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.upsample import PixelShuffleDirect, PixelShuffleUpsample
from .attention import ieee_float32
from .blocks import LayerInputs, ResidualGroup, tokens_to_image
from .config import ATDConfig
from .windows import build_window_geometry


class ATD(SRModel):
    """ATD / ATD-light.

    Args:
        config: the hyperparameters (default: official ATD x4).

    Attributes:
        exact_fp32: in IEEE float32, use the official arithmetic (explicit softmax attention,
            run in cache-sized chunks on the CPU) instead of SDPA, so the token categories, which
            flip on 1-ulp differences, match the official code on the same device. Only where
            the arithmetic can be exact: the CPU, or CUDA with TF32 off (as in the engine's fp32
            runs; :func:`.attention.ieee_float32`); otherwise, and in half precision, SDPA.
        fp32_stream: under bf16/fp16 weights, carry the residual stream (and the norms that read
            it) in float32, as autocast training does; the attentions, ConvFFN and convs run in
            the weights' dtype. No effect in float32.
        stable_order: order tokens of one category by position on the CPU too, as on CUDA and in
            an exported graph (default False: the CPU reproduces the official unstable sort;
            :func:`.attention.category_order`).
    """

    def __init__(self, config: ATDConfig | None = None) -> None:
        super().__init__(config or ATDConfig())
        c = self.config
        self.window_size = c.window_size
        self.upsampler = c.upsampler
        self.img_range = c.img_range
        self.exact_fp32 = True
        self.stable_order = False
        # carry the residual stream in float32 under half-precision weights (common/stream.py)
        self.fp32_stream = True
        self.register_buffer("mean", image_mean(c.in_chans), persistent=False)
        if not c.norm:
            self.register_buffer("no_norm", torch.zeros(1))
        self.normalize = c.norm

        self.conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(c.embed_dim, c.patch_norm)
        layer_args = dict(
            window=c.window_size,
            category_size=c.category_size,
            reducted_dim=c.reducted_dim,
            kernel_size=c.convffn_kernel_size,
            mlp_ratio=c.mlp_ratio,
            qkv_bias=c.qkv_bias,
        )
        self.layers = nn.ModuleList(
            ResidualGroup(
                depth, c.embed_dim, c.resi_connection, num_heads=heads, num_tokens=c.num_tokens, **layer_args
            )
            for depth, heads in zip(c.depths, c.num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        self.conv_after_body = residual_conv(c.embed_dim, c.resi_connection)
        self._build_reconstruction(c.upsampler, c.scale, c.embed_dim, c.in_chans, UPSAMPLE_FEATURES)
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

    # ------------------------------------------------------------------ what the engine asks

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Block activations; window, category and token-dictionary attention; the upsampler."""
        c = self.config
        keys = c.window_size**2 + c.category_size + c.num_tokens
        return (
            token_elements(c.embed_dim, c.mlp_ratio, fp32_stream=True)
            + attention_elements(max(c.num_heads), keys)
            + upsampler_elements(c.scale)
        )

    def preferred_tile_multiple(self) -> int:
        return self.window_size

    def export_size_range(self, h: int, w: int) -> tuple[SideRange, SideRange]:
        """At least a category's worth of tokens (``side^2 >= category_size``): with fewer, one
        group holds them all (another graph)."""
        (low, _), _ = super().export_size_range(h, w)
        m = self.window_size
        while low * low < self.config.category_size:
            low += m
        return (low, None), (low, None)

    def prepare_export(self) -> None:
        """Categories in the stable order, which the exported graph sorts by (``stable_order``)."""
        self.stable_order = True

    # ------------------------------------------------------------------ geometry (cached)

    def _layer_inputs(self, x: Tensor, h: int, w: int) -> LayerInputs:
        def build():
            return build_window_geometry(h, w, self.window_size, x.device, x.dtype)

        geometry = self.cached_geometry("atd.window_geometry", x, build, h, w)
        exact = self.exact_fp32 and x.dtype == torch.float32 and ieee_float32(x.device)
        return LayerInputs(
            size=(h, w), geometry=geometry, exact=exact, dtype=x.dtype, stable=self.stable_order
        )

    def _position_biases(self, x: Tensor) -> tuple[tuple[Tensor, ...], ...]:
        """Per group, per layer ``(heads, N, N)`` biases in ``x``'s dtype on its device."""

        def build():
            index = relative_position_index(self.window_size, self.window_size, x.device)
            return tuple(
                tuple(
                    layer.attn_win.position_bias(index).to(x.dtype).contiguous()
                    for layer in group.residual_group.layers
                )
                for group in self.layers
            )

        return self.cached_geometry("atd.position_biases", x, build)

    # ------------------------------------------------------------------ forward

    def forward_features(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        inp = self._layer_inputs(x, h, w)
        biases = self._position_biases(x)
        # the residual stream runs in float32 under half-precision weights (common/stream.py)
        tokens = self.patch_embed(x, stream_dtype(x.dtype, self.fp32_stream)).flatten(1, 2)
        for group, group_biases in zip(self.layers, biases, strict=True):
            tokens = group(tokens, group_biases, inp)
        return tokens_to_image(norm_to(self.norm, tokens, x.dtype), (h, w))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` in [0, 1] -> ``(B, C, H * scale, W * scale)`` (unclamped)."""
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.window_size, "symmetric")
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) * self.img_range
        feat = self.conv_first(x)
        deep = self.conv_after_body(self.forward_features(feat)) + feat
        # restoration (no upsampler) predicts a residual of the input
        x = x + self.conv_last(deep) if self.upsampler == "" else self.reconstruct(deep)
        if self.normalize:
            x = x / self.img_range + self.mean.to(x.dtype)
        return x[..., : h * self.scale, : w * self.scale]
