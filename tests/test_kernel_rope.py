"""Triton rotary embedding against the torch reference: forward, backward, strided views,
llama3-scaled frequencies."""
import math

import pytest
import torch

from conftest import DEVICE
from kernels.rope import rope, rope_reference

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def cos_sin_cache(inv_freq: torch.Tensor, max_pos: int) -> torch.Tensor:
    """[max_pos, D] fp32 on DEVICE: cos of position * inv_freq in the first half, sin in the
    second (computed on the CPU, so every device tests the same table)."""
    angles = torch.arange(max_pos, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return torch.cat((angles.cos(), angles.sin()), dim=-1).to(DEVICE)


def default_inv_freq(head_dim: int, base: float) -> torch.Tensor:
    return 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def llama3_inv_freq(head_dim: int, base: float, factor: float, low_freq_factor: float,
                    high_freq_factor: float, original_max_position_embeddings: int) -> torch.Tensor:
    """The Llama 3.1 rule: wavelengths longer than original_len / low_freq_factor are slowed
    by `factor`, shorter than original_len / high_freq_factor are kept, and the band between
    interpolates linearly in original_len / wavelength."""
    inv_freq = default_inv_freq(head_dim, base)
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    smooth = ((original_max_position_embeddings / wavelen - low_freq_factor)
              / (high_freq_factor - low_freq_factor))
    interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(medium, interpolated, out)


def _check(q, k, positions, cos_sin, dtype):
    grads = torch.randn_like(q), torch.randn_like(k)
    qa, ka = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    qb, kb = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    out_a = rope(qa, ka, positions, cos_sin)
    out_b = rope_reference(qb, kb, positions, cos_sin)
    for a, b in zip(out_a, out_b):
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a, b, **TOL[dtype])
    torch.autograd.backward(out_a, grads)
    torch.autograd.backward(out_b, grads)
    torch.testing.assert_close(qa.grad, qb.grad, **TOL[dtype])
    torch.testing.assert_close(ka.grad, kb.grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_matches_reference_with_packed_positions(dtype):
    torch.manual_seed(0)
    n, hq, hk, d = 23, 7, 1, 32
    # three packed sequences of lengths 11, 1, 11: positions restart per sequence
    positions = torch.cat([torch.arange(11), torch.arange(1), torch.arange(5, 16)]).to(DEVICE)
    cos_sin = cos_sin_cache(default_inv_freq(d, 10000.0), 64)
    _check(torch.randn(n, hq, d, dtype=dtype, device=DEVICE),
           torch.randn(n, hk, d, dtype=dtype, device=DEVICE),
           positions, cos_sin, dtype)


def test_rope_reads_strided_views_of_a_fused_qkv_projection():
    torch.manual_seed(1)
    n, hq, hk, d = 17, 4, 2, 16
    qkv = torch.randn(n, (hq + 2 * hk) * d, device=DEVICE)
    q = qkv[:, :hq * d].view(n, hq, d)
    k = qkv[:, hq * d:(hq + hk) * d].view(n, hk, d)
    assert not q.is_contiguous() and not k.is_contiguous()
    positions = torch.randint(0, 100, (n,), dtype=torch.int32, device=DEVICE)
    _check(q, k, positions, cos_sin_cache(default_inv_freq(d, 1e6), 100), torch.float32)


def test_rope_with_llama3_scaled_frequencies_at_long_positions():
    torch.manual_seed(2)
    d = 64
    inv_freq = llama3_inv_freq(d, 500000.0, factor=8.0, low_freq_factor=1.0,
                               high_freq_factor=4.0, original_max_position_embeddings=8192)
    plain = default_inv_freq(d, 500000.0)
    # the rule keeps the fastest frequencies, slows the slowest by 8, and blends in between
    assert inv_freq[0] == plain[0]
    torch.testing.assert_close(inv_freq[-1], plain[-1] / 8)
    assert ((inv_freq < plain) & (inv_freq > plain / 8)).any()
    max_pos = 20000
    positions = torch.tensor([0, 1, 8191, 8192, 12345, 19999, 4096, 77], device=DEVICE)
    q, k = torch.randn(8, 2, d, device=DEVICE), torch.randn(8, 1, d, device=DEVICE)
    _check(q, k, positions, cos_sin_cache(inv_freq, max_pos), torch.float32)
