"""The fast CPU backend: every sequence of a step in one batched torch call, no Python loop.

The reference ops (kernels/*_reference) run one SDPA per sequence; on a CPU the per-call
overhead of that loop outweighs the arithmetic of a small model. Here a step's sequences are
padded to its longest one instead: packed tokens scatter into a [S, L, H, D] batch with one
index, paged K/V is gathered with one index over the block tables, and one masked SDPA per
layer computes everything. Results match the references to float rounding (tests in
tests/test_cpu_backend.py); the references stay the readable oracle. `engine.ops` serves
these under the backend name "cpu", the default for CPU tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _positions_in_sequences(cu_seqlens: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cu_seqlens [S+1] -> (sequence of each packed token [n], its offset within it [n])."""
    starts = cu_seqlens[:-1].long()
    lens = cu_seqlens[1:].long() - starts
    seq = torch.repeat_interleave(torch.arange(len(lens), device=cu_seqlens.device), lens,
                                  output_size=n)
    return seq, torch.arange(n, device=cu_seqlens.device) - starts[seq]


def _gather_pages(cache: torch.Tensor, block_tables: torch.Tensor, num_keys: int) -> torch.Tensor:
    """cache [num_blocks, block_size, Hk, D], block_tables [S, >= blocks] -> [S, Hk, L, D],
    L = num_keys rounded up to whole blocks (one index over every sequence's pages)."""
    nb, bs, hk, d = cache.shape
    width = -(-num_keys // bs)
    index = block_tables[:, :width].reshape(-1).long()
    # index_select copies whole pages; advanced indexing would compute every element's offset
    pages = cache.view(nb, bs * hk * d).index_select(0, index)
    return pages.view(block_tables.shape[0], width * bs, hk, d).transpose(1, 2)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
          scale: float, causal: bool = False) -> torch.Tensor:
    """q [S, Hq, Lq, D], k, v [S, Hk, Lk, D] (Hq a multiple of Hk) -> [S, Hq, Lq, D]."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                     cu_seqlens_k: torch.Tensor, scale: float,
                     block_tables: torch.Tensor | None = None) -> torch.Tensor:
    """Same contract as kernels.attention.varlen_attention_reference: causal attention over
    packed sequences, q [Nq, Hq, D]; k, v packed [Nk, Hk, D] or, with block_tables
    [S, max_blocks], paged caches [num_blocks, block_size, Hk, D]; queries are the last
    len_q(s) positions of their sequence. -> [Nq, Hq, D] in q.dtype (differentiable)."""
    n, hq, d = q.shape
    num_seqs = cu_seqlens_q.shape[0] - 1
    len_q = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).long()
    len_k = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).long()
    max_q, max_k = int(len_q.max()), int(len_k.max())
    keys_like_queries = block_tables is None and bool((len_k == len_q).all())
    if keys_like_queries and num_seqs > BUCKET_SEQS and int(len_q.min()) < max_q:
        return _by_length_buckets(q, k, v, len_q, scale)
    if keys_like_queries and max_q * num_seqs == n:
        # equal lengths (training, the dense forward): the packed stream is the batch
        qs, ks, vs = (x.reshape(num_seqs, max_q, x.shape[1], d).transpose(1, 2) for x in (q, k, v))
        return _sdpa(qs, ks, vs, None, scale, causal=True).transpose(1, 2).reshape(n, hq, d)
    seq_q, off_q = _positions_in_sequences(cu_seqlens_q, n)

    def padded(x: torch.Tensor, seq: torch.Tensor, off: torch.Tensor, length: int) -> torch.Tensor:
        """packed [N, H, D] -> [S, H, length, D], zeros after each sequence's end"""
        return x.new_zeros(num_seqs, length, *x.shape[1:]).index_put((seq, off), x).transpose(1, 2)

    qs = padded(q, seq_q, off_q, max_q)
    if keys_like_queries:
        # padding sits after each sequence's last query, so plain causal attention is exact
        # for every real row (padded rows are dropped)
        o = _sdpa(qs, padded(k, seq_q, off_q, max_q), padded(v, seq_q, off_q, max_q), None, scale,
                  causal=True)
        return o.transpose(1, 2)[seq_q, off_q]
    if block_tables is None:
        seq_k, off_k = _positions_in_sequences(cu_seqlens_k, k.shape[0])
        ks, vs = padded(k, seq_k, off_k, max_k), padded(v, seq_k, off_k, max_k)
    else:
        ks = _gather_pages(k, block_tables, max_k).to(q.dtype)
        vs = _gather_pages(v, block_tables, max_k).to(q.dtype)
    # bottom-right causal: query i of s sees keys j <= i + len_k(s) - len_q(s), j < len_k(s)
    i = torch.arange(max_q, device=q.device)[None, :, None]
    j = torch.arange(ks.shape[2], device=q.device)[None, None, :]
    mask = (j <= i + (len_k - len_q)[:, None, None]) & (j < len_k[:, None, None])
    o = _sdpa(qs, ks, vs, mask[:, None], scale)
    return o.transpose(1, 2)[seq_q, off_q]


BUCKET_SEQS = 8     # sequences per padded batch when a step's lengths differ


def _by_length_buckets(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor,
                       scale: float) -> torch.Tensor:
    """Causal attention over packed sequences (keys packed like the queries) in buckets of
    BUCKET_SEQS sequences of similar length: padding every sequence to the step's longest one
    would waste most of the quadratic attention work when lengths spread widely."""
    starts = torch.cumsum(lens, 0) - lens
    order = torch.argsort(lens, stable=True)
    outs, indices = [], []
    for b in range(0, len(order), BUCKET_SEQS):
        group = order[b:b + BUCKET_SEQS]
        group_lens = lens[group]
        total = int(group_lens.sum())
        # packed token indices of the group's sequences, back to back
        offsets = torch.repeat_interleave(starts[group] - (torch.cumsum(group_lens, 0) - group_lens),
                                          group_lens, output_size=total)
        index = offsets + torch.arange(total)
        cu = torch.zeros(len(group) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(group_lens, 0)
        outs.append(varlen_attention(q[index], k[index], v[index], cu, cu, scale))
        indices.append(index)
    return q.new_zeros(q.shape).index_put((torch.cat(indices),), torch.cat(outs))


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor,
                           scale: float) -> torch.Tensor:
    """Same contract as kernels.paged_attention.paged_decode_attention_reference: q [B, Hq, D],
    caches [num_blocks, block_size, Hk, D], block_tables [B, max_blocks] int32, context_lens
    [B] int32 -> [B, Hq, D]. One gather of every sequence's pages, one masked SDPA."""
    b, hq, d = q.shape
    lens = context_lens.long()
    ks = _gather_pages(k_cache, block_tables, int(lens.max())).to(q.dtype)
    vs = _gather_pages(v_cache, block_tables, int(lens.max())).to(q.dtype)
    mask = torch.arange(ks.shape[2], device=q.device)[None, :] < lens[:, None]
    o = _sdpa(q[:, :, None], ks, vs, mask[:, None, None], scale)
    return o.view(b, hq, d)


def store_kvcache(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                  slot_mapping: torch.Tensor) -> None:
    """Same contract as kernels.kv_store.store_kvcache_reference (slot -1: skip): one
    index_copy_ per cache when no slot is skipped."""
    slots = slot_mapping.long()
    if bool((slots < 0).any()):
        keep = slots >= 0
        slots, k, v = slots[keep], k[keep], v[keep]
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, k.to(k_cache.dtype))
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, v.to(v_cache.dtype))


def rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
         cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as kernels.rope.rope_reference; q and k rotate together in one pass."""
    hq, half = q.shape[1], q.shape[-1] // 2
    cs = cos_sin[positions.long()]
    cos, sin = cs[:, None, :half], cs[:, None, half:]
    x = torch.cat((q, k), dim=1).float()
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out[:, :hq].to(q.dtype), out[:, hq:].to(k.dtype)


class DenseDecodeKV:
    """Decode steps without re-gathering the paged cache: a dense copy of each decoding
    sequence's K/V ([B, Hk, capacity, D] per layer), built from the pages once per batch
    composition and then extended by one row a step.

    Paged decode re-reads and copies every page each step; on a CPU that copy costs as much as
    the attention itself. The paged cache stays the source of truth (every new row is stored
    there too), so prefix caching and preemption are unaffected; the copy is dropped whenever
    the batch changes in any way but losing sequences.
    """

    def __init__(self, max_bytes: int = 2**30):
        self.max_bytes = max_bytes
        self.seq_ids: list[int] = []
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []

    def reset(self) -> None:
        self.seq_ids, self.k, self.v = [], [], []

    def prepare(self, kv_caches, seq_ids: list[int], block_tables: torch.Tensor,
                positions: torch.Tensor) -> bool:
        """Before a decode step of sequences `seq_ids` writing at `positions` [B] (long):
        bring the dense copy up to date. False (and no copy) when it would not fit."""
        num_keys = int(positions.max()) + 1
        capacity = self.k[0].shape[2] if self.k else 0
        if seq_ids != self.seq_ids or num_keys > capacity:
            keep = _kept_rows(self.seq_ids, seq_ids) if num_keys <= capacity else None
            if keep is not None:
                index = torch.tensor(keep)
                self.k = [x.index_select(0, index) for x in self.k]
                self.v = [x.index_select(0, index) for x in self.v]
            else:
                k_cache = kv_caches[0][0]
                block_size, hk, d = k_cache.shape[1:]
                capacity = -(-(num_keys + 4 * block_size) // block_size) * block_size
                row_bytes = 2 * len(kv_caches) * hk * d * k_cache.element_size()
                if len(seq_ids) * capacity * row_bytes > self.max_bytes:
                    self.reset()
                    return False
                width = capacity // block_size
                tables = torch.zeros(len(seq_ids), width, dtype=block_tables.dtype)
                tables[:, :block_tables.shape[1]] = block_tables[:, :width]
                self.k = [_gather_pages(kc, tables, capacity).contiguous() for kc, _ in kv_caches]
                self.v = [_gather_pages(vc, tables, capacity).contiguous() for _, vc in kv_caches]
            self.seq_ids = list(seq_ids)
        self.rows = torch.arange(len(seq_ids))
        self.positions = positions
        self.num_keys = num_keys
        self.mask = (torch.arange(num_keys)[None, :] <= positions[:, None])[:, None, None]
        return True

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               scale: float) -> torch.Tensor:
        """q [B, Hq, D], this step's k, v [B, Hk, D] -> [B, Hq, D] over the whole context."""
        ks, vs = self.k[layer], self.v[layer]
        ks[self.rows, :, self.positions] = k.to(ks.dtype)
        vs[self.rows, :, self.positions] = v.to(vs.dtype)
        n = self.num_keys
        o = _sdpa(q[:, :, None], ks[:, :, :n].to(q.dtype), vs[:, :, :n].to(q.dtype), self.mask, scale)
        return o.view(q.shape)


def _kept_rows(old: list[int], new: list[int]) -> list[int] | None:
    """Indices into `old` giving `new`, when `new` only drops entries of `old` (in order)."""
    where = {s: i for i, s in enumerate(old)}
    rows = [where.get(s) for s in new]
    if any(r is None for r in rows) or rows != sorted(rows):
        return None
    return rows
