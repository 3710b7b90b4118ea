"""The shared attention call: head dims padded for CUDA's fused kernels give the same result."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import srt.arch.common.attention as attn


def test_padded_head_dims_only_on_cuda():
    assert [attn.padded_head_dim(d, "cuda") for d in (30, 32, 35, 122, 8)] == [32, 32, 40, 128, 8]
    assert attn.padded_head_dim(30, "cpu") == 30


def test_zero_padding_the_heads_changes_nothing(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, 6, 64, 30, generator=g), torch.randn(3, 6, 80, 30, generator=g)
    v = torch.randn(3, 6, 80, 35, generator=g)
    bias = torch.randn(1, 6, 64, 80, generator=g)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=30**-0.5)
    monkeypatch.setattr(attn, "padded_head_dim", lambda d, device_type: -(-d // 8) * 8)  # as on CUDA
    padded = attn.attention(q, k, v, bias)
    assert padded.shape == reference.shape
    torch.testing.assert_close(padded, reference, atol=2e-6, rtol=0)
