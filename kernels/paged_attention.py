"""Decode attention: one query token per sequence against a paged KV cache."""
import torch

from kernels.attention import gather_paged_kv


def paged_decode_attention_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                     block_tables: torch.Tensor, context_lens: torch.Tensor,
                                     scale: float) -> torch.Tensor:
    """q [B, Hq, D]; caches [num_blocks, block_size, Hk, D]; block_tables [B, max_blocks] int32;
    context_lens [B] int32 (keys 0..len-1, the new token's K/V already stored). -> [B, Hq, D]."""
    out = torch.empty_like(q)
    group = q.shape[1] // k_cache.shape[2]
    for b, length in enumerate(context_lens.tolist()):
        ks = gather_paged_kv(k_cache, block_tables[b], length).float()   # [L, Hk, D]
        vs = gather_paged_kv(v_cache, block_tables[b], length).float()
        ks = ks.repeat_interleave(group, dim=1)
        vs = vs.repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,lhd->hl", q[b].float(), ks) * scale
        out[b] = torch.einsum("hl,lhd->hd", scores.softmax(-1), vs).to(q.dtype)
    return out
