"""Write new K/V rows into paged cache slots."""
import torch
import triton
import triton.language as tl


def store_kvcache_reference(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                            v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """k, v [N, Hk, D]; caches [num_blocks, block_size, Hk, D]; slot_mapping [N] int
    (slot = block * block_size + offset; -1 means skip). Writes in place."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    k_cache.view(-1, *k_cache.shape[2:])[slots] = k[keep].to(k_cache.dtype)
    v_cache.view(-1, *v_cache.shape[2:])[slots] = v[keep].to(v_cache.dtype)


# ----------------------------------------------------------------------------- Triton


@triton.jit
def _store_kvcache_kernel(K, V, K_CACHE, V_CACHE, SLOTS,
                          stride_kn, stride_kh, stride_vn, stride_vh,
                          stride_cb, stride_cs, stride_ch, block_size, H, D,
                          BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program per new token copies its [H, D] key and value rows into the cache slot."""
    tok = tl.program_id(0).to(tl.int64)
    slot = tl.load(SLOTS + tok).to(tl.int64)
    if slot < 0:        # padding token (e.g. a CUDA-graph batch slot): nothing to store
        return
    h = tl.arange(0, BLOCK_H)[:, None]
    d = tl.arange(0, BLOCK_D)[None, :]
    mask = (h < H) & (d < D)
    dst = (slot // block_size) * stride_cb + (slot % block_size) * stride_cs + h * stride_ch + d
    k = tl.load(K + tok * stride_kn + h * stride_kh + d, mask=mask)
    tl.store(K_CACHE + dst, k.to(K_CACHE.dtype.element_ty), mask=mask)
    v = tl.load(V + tok * stride_vn + h * stride_vh + d, mask=mask)
    tl.store(V_CACHE + dst, v.to(V_CACHE.dtype.element_ty), mask=mask)


def store_kvcache(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                  slot_mapping: torch.Tensor) -> None:
    """Triton scatter of new K/V rows into paged caches, in place. k, v [N, Hk, D] (strided
    views allowed); caches [num_blocks, block_size, Hk, D] with the same layout as each other;
    slot_mapping [N] int (block * block_size + offset; -1 skips the token)."""
    N, H, D = k.shape
    if v.shape != k.shape or k_cache.shape != v_cache.shape or k_cache.shape[2:] != (H, D):
        raise ValueError(f"store_kvcache: k {tuple(k.shape)}, v {tuple(v.shape)}, caches "
                         f"{tuple(k_cache.shape)} / {tuple(v_cache.shape)} do not match")
    if k_cache.stride() != v_cache.stride() or k_cache.stride(-1) != 1:
        raise ValueError("store_kvcache: k_cache and v_cache need the same strides and a "
                         "contiguous last dimension")
    if N == 0:
        return
    k = k if k.stride(-1) == 1 else k.contiguous()
    v = v if v.stride(-1) == 1 else v.contiguous()
    block_h, block_d = triton.next_power_of_2(H), triton.next_power_of_2(D)
    _store_kvcache_kernel[(N,)](k, v, k_cache, v_cache, slot_mapping,
                                k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                                k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
                                k_cache.shape[1], H, D, BLOCK_H=block_h, BLOCK_D=block_d,
                                num_warps=4 if block_h * block_d >= 1024 else 1)
