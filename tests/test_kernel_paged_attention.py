"""Triton flash-decoding against the reference: GQA, paged caches, contexts split several
ways (including splits left empty by short contexts)."""
import pytest
import torch

from conftest import DEVICE
from kernels.paged_attention import paged_decode_attention, paged_decode_attention_reference

TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _random_tables(context_lens, page, max_blocks, num_pages, generator):
    tables = torch.zeros(len(context_lens), max_blocks, dtype=torch.int32)
    free = torch.randperm(num_pages, generator=generator, device=DEVICE).tolist()
    for b, length in enumerate(context_lens):
        for i in range(-(-length // page)):
            tables[b, i] = free.pop()
    return tables.to(DEVICE)


@pytest.mark.parametrize("dtype,hq,hk,d", [(torch.float32, 7, 1, 16), (torch.bfloat16, 4, 2, 32)])
def test_paged_decode_matches_reference(dtype, hq, hk, d):
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    page, num_pages, max_blocks = 4, 32, 10
    context_lens = [1, 7, 33, 40]
    k_cache = torch.randn(num_pages, page, hk, d, generator=gen, device=DEVICE).to(dtype)
    v_cache = torch.randn(num_pages, page, hk, d, generator=gen, device=DEVICE).to(dtype)
    tables = _random_tables(context_lens, page, max_blocks, num_pages, gen)
    q = torch.randn(len(context_lens), hq, d, generator=gen, device=DEVICE).to(dtype)
    lens = torch.tensor(context_lens, dtype=torch.int32, device=DEVICE)
    out = paged_decode_attention(q, k_cache, v_cache, tables, lens, d ** -0.5)
    ref = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, d ** -0.5)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref, **TOL[dtype])


def test_paged_decode_head_dim_64_with_large_pages():
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    page, d = 16, 64
    k_cache = torch.randn(6, page, 2, d, generator=gen, device=DEVICE)
    v_cache = torch.randn(6, page, 2, d, generator=gen, device=DEVICE)
    tables = torch.tensor([[4, 1, 0], [2, 5, 3]], dtype=torch.int32, device=DEVICE)
    lens = torch.tensor([20, 37], dtype=torch.int32, device=DEVICE)
    q = torch.randn(2, 4, d, generator=gen, device=DEVICE)
    torch.testing.assert_close(paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.125),
                               paged_decode_attention_reference(q, k_cache, v_cache, tables,
                                                                lens, 0.125),
                               **TOL[torch.float32])
