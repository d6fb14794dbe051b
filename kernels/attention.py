"""Causal varlen attention over packed sequences (prefill and training)."""
import torch
import torch.nn.functional as F


def gather_paged_kv(cache: torch.Tensor, block_table: torch.Tensor, length: int) -> torch.Tensor:
    """cache [num_blocks, block_size, Hk, D], block_table [max_blocks] -> [length, Hk, D]."""
    block_size = cache.shape[1]
    n_blocks = (length + block_size - 1) // block_size
    return cache[block_table[:n_blocks].long()].flatten(0, 1)[:length]


def varlen_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                               scale: float, block_tables: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention, one sequence at a time through SDPA.

    q [Nq, Hq, D]; without block_tables k, v are [Nk, Hk, D] packed like q by cu_seqlens_k;
    with block_tables [S, max_blocks] they are paged caches [num_blocks, block_size, Hk, D] and
    sequence s has keys 0..len_k(s)-1. Queries are the last len_q(s) positions of their sequence
    (bottom-right causal alignment), so a prefill that extends a cached prefix works.
    Hq must be a multiple of Hk (GQA). Returns [Nq, Hq, D] in q.dtype.
    """
    out = torch.empty_like(q)
    group = q.shape[1] // k.shape[-2]
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for s in range(len(cq) - 1):
        len_q, len_k = cq[s + 1] - cq[s], ck[s + 1] - ck[s]
        if len_q == 0:
            continue
        if block_tables is None:
            ks, vs = k[ck[s]:ck[s + 1]], v[ck[s]:ck[s + 1]]
        else:
            ks = gather_paged_kv(k, block_tables[s], len_k)
            vs = gather_paged_kv(v, block_tables[s], len_k)
        qs = q[cq[s]:cq[s + 1]].transpose(0, 1)                      # [Hq, Lq, D]
        ks = ks.transpose(0, 1).repeat_interleave(group, dim=0)      # [Hq, Lk, D]
        vs = vs.transpose(0, 1).repeat_interleave(group, dim=0)
        # bottom-right causal mask: query i sees keys j <= i + (len_k - len_q)
        i = torch.arange(len_q, device=q.device)[:, None]
        j = torch.arange(len_k, device=q.device)[None, :]
        mask = j <= i + (len_k - len_q)
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)
        out[cq[s]:cq[s + 1]] = o.transpose(0, 1)
    return out
