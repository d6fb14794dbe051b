"""Triton varlen FlashAttention against the per-sequence SDPA reference: forward and grads,
GQA, bottom-right causal alignment, a length-1 sequence, paged K/V through block tables."""
import pytest
import torch

from conftest import DEVICE
from kernels.attention import varlen_attention, varlen_attention_reference

# fp32: products are exact fp32 on both sides, only summation order differs.
# bf16: P is rounded to bf16 before P @ V (as in FlashAttention), the reference keeps fp32.
TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
GRAD_TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.bfloat16: dict(atol=4e-2, rtol=4e-2)}


def _cu(lengths):
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths).cumsum(0)
    return cu.to(DEVICE)


def _compare_packed(len_q, len_k, hq, hk, d, dtype, seed=0):
    torch.manual_seed(seed)
    cu_q, cu_k = _cu(len_q), _cu(len_k)
    q = torch.randn(sum(len_q), hq, d, dtype=dtype, device=DEVICE)
    kv = torch.randn(sum(len_k), 2 * hk, d, dtype=dtype, device=DEVICE)
    k, v = kv[:, :hk], kv[:, hk:]            # strided views, as from a fused projection
    grad = torch.randn_like(q)
    scale = d ** -0.5
    ours = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    ref = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out_a = varlen_attention(*ours, cu_q, cu_k, scale)
    out_b = varlen_attention_reference(*ref, cu_q, cu_k, scale)
    assert out_a.dtype == dtype and out_a.shape == q.shape
    torch.testing.assert_close(out_a, out_b, **TOL[dtype])
    out_a.backward(grad)
    out_b.backward(grad)
    for name, a, b in zip("qkv", ours, ref):
        torch.testing.assert_close(a.grad, b.grad, **GRAD_TOL[dtype], msg=lambda m: f"d{name}: {m}")


def test_gqa_7_fp32_with_a_length_one_sequence():
    lengths = [11, 1, 23, 5]
    _compare_packed(lengths, lengths, hq=7, hk=1, d=16, dtype=torch.float32)


def test_gqa_2_bf16_head_dim_32():
    lengths = [17, 1, 9]
    _compare_packed(lengths, lengths, hq=4, hk=2, d=32, dtype=torch.bfloat16, seed=1)


def test_mha_head_dim_64():
    _compare_packed([19, 6], [19, 6], hq=2, hk=2, d=64, dtype=torch.float32, seed=2)


def test_queries_are_the_last_positions_when_keys_outnumber_them():
    # bottom-right alignment: a prefill that extends a cached prefix of len_k - len_q keys
    _compare_packed([3, 1, 7], [10, 4, 7], hq=4, hk=2, d=16, dtype=torch.float32, seed=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_paged_keys_through_block_tables(dtype):
    torch.manual_seed(4)
    hq, hk, d, page, num_pages = 6, 2, 16, 4, 16
    len_q, len_k = [5, 1, 8], [13, 1, 20]
    k_cache = torch.randn(num_pages, page, hk, d, dtype=dtype, device=DEVICE)
    v_cache = torch.randn(num_pages, page, hk, d, dtype=dtype, device=DEVICE)
    # pages handed out out of order; unused table entries point at page 0
    block_tables = torch.zeros(3, 6, dtype=torch.int32)
    block_tables[0, :4] = torch.tensor([7, 2, 11, 0])
    block_tables[1, :1] = torch.tensor([5])
    block_tables[2, :5] = torch.tensor([1, 15, 3, 9, 12])
    block_tables = block_tables.to(DEVICE)
    q = torch.randn(sum(len_q), hq, d, dtype=dtype, device=DEVICE)
    cu_q, cu_k = _cu(len_q), _cu(len_k)
    out = varlen_attention(q, k_cache, v_cache, cu_q, cu_k, 0.25, block_tables)
    ref = varlen_attention_reference(q, k_cache, v_cache, cu_q, cu_k, 0.25, block_tables)
    torch.testing.assert_close(out, ref, **TOL[dtype])


def test_rejects_head_dim_that_is_not_a_power_of_two():
    q = torch.randn(4, 2, 24, device=DEVICE)
    cu = _cu([4])
    with pytest.raises(ValueError, match="head_dim 24"):
        varlen_attention(q, q, q, cu, cu, 1.0)
