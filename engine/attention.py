"""The attention interface every caller of the model goes through.

Training and the dense path pass packed sequences (cu_seqlens). Generation adds a paged KV
cache: new K/V rows are stored at `slot_mapping`, prefill attends over the cache when a
cached prefix exists (block_tables), and decode runs paged attention (one token a sequence).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine import ops


@dataclass
class AttentionMetadata:
    cu_seqlens_q: torch.Tensor                  # [S+1] int32, offsets of each sequence's queries
    max_seqlen_q: int
    cu_seqlens_k: torch.Tensor | None = None    # [S+1] keys per sequence; None: same as queries
    max_seqlen_k: int = 0
    # paged KV cache, generation only: one (k_cache, v_cache) per layer,
    # each [num_blocks, block_size, Hk, D]
    kv_caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    slot_mapping: torch.Tensor | None = None    # [N] int64 cache slot of each new token, -1 skip
    block_tables: torch.Tensor | None = None    # [S, max_blocks] int32; set when reading the cache
    context_lens: torch.Tensor | None = None    # [S] int32, decode only
    is_decode: bool = False
    # CPU decode: a dense copy of the batch's K/V (kernels.cpu_attention.DenseDecodeKV) that
    # decode attention reads instead of gathering the pages; the pages are still written
    dense_kv: object | None = None

    @staticmethod
    def for_lengths(lengths: list[int], device: torch.device | str) -> "AttentionMetadata":
        """Plain packed causal attention over sequences of the given lengths."""
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
        return AttentionMetadata(cu_seqlens_q=cu.to(device), max_seqlen_q=max(lengths),
                                 max_seqlen_k=max(lengths))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int,
           meta: AttentionMetadata, scale: float) -> torch.Tensor:
    """q [N, Hq, D], k, v [N, Hk, D] for the N new tokens -> [N, Hq, D]."""
    if meta.kv_caches is not None:
        k_cache, v_cache = meta.kv_caches[layer]
        if meta.slot_mapping is not None:
            ops.store_kvcache(k, v, k_cache, v_cache, meta.slot_mapping)
        if meta.is_decode:
            if meta.dense_kv is not None:
                return meta.dense_kv.attend(layer, q, k, v, scale)
            return ops.paged_decode_attention(q, k_cache, v_cache, meta.block_tables,
                                              meta.context_lens, scale)
        if meta.block_tables is not None:   # a cached prefix: read keys from the cache
            return ops.varlen_attention(q, k_cache, v_cache, meta.cu_seqlens_q,
                                        meta.cu_seqlens_k, scale, meta.block_tables)
    cu_k = meta.cu_seqlens_k if meta.cu_seqlens_k is not None else meta.cu_seqlens_q
    return ops.varlen_attention(q, k, v, meta.cu_seqlens_q, cu_k, scale)
