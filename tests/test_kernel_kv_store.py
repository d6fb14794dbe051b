"""Triton KV-cache scatter against the torch reference."""
import pytest
import torch

from conftest import DEVICE
from kernels.kv_store import store_kvcache, store_kvcache_reference


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16])
def test_store_kvcache_matches_reference_and_skips_negative_slots(cache_dtype):
    torch.manual_seed(0)
    n, hk, d, num_blocks, block_size = 9, 2, 16, 5, 4
    kv = torch.randn(n, 3 * hk * d, device=DEVICE)  # k, v: strided views of a fused projection
    k = kv[:, hk * d:2 * hk * d].view(n, hk, d)
    v = kv[:, 2 * hk * d:].view(n, hk, d)
    slots = torch.tensor([3, -1, 17, 0, 8, -1, 19, 12, 5], dtype=torch.int64, device=DEVICE)
    caches = [torch.randn(num_blocks, block_size, hk, d, device=DEVICE).to(cache_dtype)
              for _ in range(2)]
    ref = [c.clone() for c in caches]
    store_kvcache(k, v, caches[0], caches[1], slots)
    store_kvcache_reference(k, v, ref[0], ref[1], slots)
    torch.testing.assert_close(caches[0], ref[0], atol=0, rtol=2**-7)
    torch.testing.assert_close(caches[1], ref[1], atol=0, rtol=2**-7)
    # untouched slots keep their old contents exactly
    written = set(slots[slots >= 0].tolist())
    for slot in range(num_blocks * block_size):
        if slot not in written:
            b, o = divmod(slot, block_size)
            assert torch.equal(caches[0][b, o], ref[0][b, o])


def test_store_kvcache_rejects_mismatched_cache_shape():
    k = torch.randn(2, 2, 16, device=DEVICE)
    cache = torch.zeros(4, 4, 3, 16, device=DEVICE)
    with pytest.raises(ValueError, match="store_kvcache"):
        store_kvcache(k, k, cache, cache.clone(), torch.tensor([0, 1], device=DEVICE))
