"""Write new K/V rows into paged cache slots."""
import torch


def store_kvcache_reference(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                            v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """k, v [N, Hk, D]; caches [num_blocks, block_size, Hk, D]; slot_mapping [N] int
    (slot = block * block_size + offset; -1 means skip). Writes in place."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    k_cache.view(-1, *k_cache.shape[2:])[slots] = k[keep].to(k_cache.dtype)
    v_cache.view(-1, *v_cache.shape[2:])[slots] = v[keep].to(v_cache.dtype)
