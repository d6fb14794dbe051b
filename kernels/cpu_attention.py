"""The fast CPU backend: a step's sequences in a few batched torch calls, no per-sequence loop.

The reference ops (kernels/*_reference) run one SDPA per sequence; on a CPU the per-call
overhead of that loop outweighs the arithmetic of a small model. Here:
  - varlen attention pads the step's sequences into a few groups of similar length (sorted,
    a group grows while padding adds under GROUP_WASTE of its work) and runs one SDPA per
    group; the grouping is planned once per step and reused by every layer;
  - paged K/V is gathered with one index over the block tables;
  - decode attention (one query a sequence) is two batched matmuls, and DenseDecodeKV keeps a
    dense copy of the decoding batch's K/V between steps instead of re-gathering pages;
  - RMS norm uses torch's one-pass op for fp32; RoPE rotates q and k in three passes.
Results match the references to float rounding (tests/test_cpu_backend.py); the references
stay the readable oracle. `engine.ops` serves these under the backend name "cpu", the default
for CPU tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.rms_norm import rms_norm_reference


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


def _one_query_attention(q: torch.Tensor, ks: torch.Tensor, vs: torch.Tensor,
                         additive_mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Decode: q [B, Hq, D], ks, vs [B, Hk, L, D], additive_mask [B, 1, 1, L] (0 or -inf)
    -> [B, Hq, D]. Two batched matmuls with each KV head's query heads as rows: SDPA's CPU
    kernel pays a fixed cost per (sequence, head) that outweighs a one-row product."""
    b, hq, d = q.shape
    hk = ks.shape[1]
    scores = torch.matmul(q.view(b, hk, hq // hk, d), ks.transpose(-1, -2))
    probs = torch.softmax(scores.mul_(scale).add_(additive_mask), dim=-1)
    return torch.matmul(probs, vs).view(b, hq, d)


def _additive(keep: torch.Tensor) -> torch.Tensor:
    """bool mask -> 0 where kept, -inf elsewhere (fp32)."""
    return torch.zeros(keep.shape, device=keep.device).masked_fill_(~keep, float("-inf"))


# --- varlen attention: sequences in padded groups of similar length ---------------------------
@dataclass
class _Group:
    """Sequences attended as one padded batch [s, H, max_q, D] (see _plan)."""
    seqs: torch.Tensor              # [s] their indices among the step's sequences
    q_rows: torch.Tensor | None     # packed rows of their queries (None: every row, in order)
    k_rows: torch.Tensor | None     # packed rows of their keys (packed keys unlike the queries)
    seq_q: torch.Tensor             # each query row's sequence within the group
    off_q: torch.Tensor             # and its offset within that sequence
    seq_k: torch.Tensor | None      # the same for the keys (packed keys unlike the queries)
    off_k: torch.Tensor | None
    max_q: int
    max_k: int
    mask: torch.Tensor | None       # [s, 1, max_q, max_k] bool; None: plain causal attention
    dense: bool                     # one length, keys are the queries: a reshape, no padding


@dataclass
class _Plan:
    groups: list[_Group]
    rows: torch.Tensor | None       # packed query rows in the order of the groups' outputs


GROUP_WASTE = 0.25      # padded attention work a group may add to its real work
GROUP_SLACK = 4096      # ... and (query, key) pairs more: one call costs about that much


def _split(len_q: list[int], len_k: list[int]) -> list[list[int]]:
    """Sequences in groups of similar length: sorted by key length, a group grows while its
    padded work (size x longest queries x longest keys) stays within GROUP_WASTE of its real
    work. Padding every sequence to the step's longest one would waste most of the quadratic
    attention work when lengths spread widely."""
    order = sorted(range(len(len_q)), key=lambda s: (len_k[s], len_q[s]))
    groups, group, real, mq, mk = [], [], 0, 0, 0
    for s in order:
        r, q, k = real + len_q[s] * len_k[s], max(mq, len_q[s]), max(mk, len_k[s])
        if group and (len(group) + 1) * q * k > (1 + GROUP_WASTE) * r + GROUP_SLACK:
            groups.append(group)
            group, r, q, k = [], len_q[s] * len_k[s], len_q[s], len_k[s]
        group.append(s)
        real, mq, mk = r, q, k
    return groups + [group]


def _positions(lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lengths [s] of sequences packed back to back -> (the sequence of each row, the row's
    offset within it)."""
    starts = torch.cumsum(lens, 0) - lens
    n = int(lens.sum())
    seq = torch.repeat_interleave(torch.arange(len(lens)), lens, output_size=n)
    return seq, torch.arange(n) - starts[seq]


def _rows(starts: torch.Tensor, lens: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Packed row indices of the given sequences, back to back."""
    seq, off = _positions(lens[members])
    return starts[members][seq] + off


def _build_plan(len_q: torch.Tensor, len_k: torch.Tensor, paged: bool) -> _Plan:
    keys_like_queries = not paged and bool(torch.equal(len_q, len_k))
    lq, lk = len_q.tolist(), len_k.tolist()
    groups = _split(lq, lk)
    if len(groups) == 1:
        groups = [list(range(len(lq)))]         # one group: the packed order as it is
    starts_q = torch.cumsum(len_q, 0) - len_q
    starts_k = torch.cumsum(len_k, 0) - len_k
    out = []
    for members in groups:
        seqs = torch.tensor(members)
        whole = len(groups) == 1
        gq, gk = len_q[seqs], len_k[seqs]
        max_q, max_k = max(lq[s] for s in members), max(lk[s] for s in members)
        seq_q, off_q = _positions(gq)
        dense = keys_like_queries and all(lq[s] == max_q for s in members)
        mask = seq_k = off_k = k_rows = None
        if not keys_like_queries:
            if not paged:
                seq_k, off_k = _positions(gk)
                k_rows = None if whole else _rows(starts_k, len_k, seqs)
            # bottom-right causal: query i of s sees keys j <= i + len_k(s) - len_q(s), j < len_k(s)
            i = torch.arange(max_q)[None, :, None]
            j = torch.arange(max_k)[None, None, :]
            mask = ((j <= i + (gk - gq)[:, None, None]) & (j < gk[:, None, None]))[:, None]
        out.append(_Group(seqs, None if whole else _rows(starts_q, len_q, seqs), k_rows,
                          seq_q, off_q, seq_k, off_k, max_q, max_k, mask, dense))
    rows = None if len(out) == 1 else torch.cat([g.q_rows for g in out])
    return _Plan(out, rows)


_last_plan: tuple[bytes, _Plan] | None = None


def _plan(cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, paged: bool) -> _Plan:
    """The step's grouping, built once and reused by every layer (keyed by the lengths)."""
    global _last_plan
    cu_q, cu_k = cu_seqlens_q.cpu(), cu_seqlens_k.cpu()
    key = cu_q.numpy().tobytes() + b"|" + cu_k.numpy().tobytes() + (b"p" if paged else b"")
    if _last_plan is None or _last_plan[0] != key:
        len_q = (cu_q[1:] - cu_q[:-1]).long()
        len_k = (cu_k[1:] - cu_k[:-1]).long()
        _last_plan = (key, _build_plan(len_q, len_k, paged))
    return _last_plan[1]


def _padded(x: torch.Tensor, seq: torch.Tensor, off: torch.Tensor, num: int, length: int) -> torch.Tensor:
    """packed [N, H, D] -> [num, H, length, D], zeros after each sequence's end."""
    return x.new_zeros(num, length, *x.shape[1:]).index_put((seq, off), x).transpose(1, 2)


def _attend_group(g: _Group, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                  block_tables: torch.Tensor | None) -> torch.Tensor:
    """Attention of one group's queries -> [their rows, Hq, D], in the group's row order."""
    s, d = len(g.seqs), q.shape[-1]
    if g.q_rows is not None:
        q = q.index_select(0, g.q_rows)
        if g.mask is None:                        # keys are the queries: the same rows
            k, v = k.index_select(0, g.q_rows), v.index_select(0, g.q_rows)
    if g.k_rows is not None:
        k, v = k.index_select(0, g.k_rows), v.index_select(0, g.k_rows)
    if g.dense:
        qs, ks, vs = (x.reshape(s, g.max_q, x.shape[1], d).transpose(1, 2) for x in (q, k, v))
        return _sdpa(qs, ks, vs, None, scale, causal=True).transpose(1, 2).reshape(q.shape)
    qs = _padded(q, g.seq_q, g.off_q, s, g.max_q)
    if g.mask is None:
        # padding sits after each sequence's last query, so plain causal attention is exact
        # for every real row (padded rows are dropped)
        ks, vs = _padded(k, g.seq_q, g.off_q, s, g.max_q), _padded(v, g.seq_q, g.off_q, s, g.max_q)
    elif block_tables is not None:
        tables = block_tables if g.q_rows is None else block_tables.index_select(0, g.seqs)
        ks = _gather_pages(k, tables, g.max_k)[:, :, :g.max_k].to(q.dtype)
        vs = _gather_pages(v, tables, g.max_k)[:, :, :g.max_k].to(q.dtype)
    else:
        ks, vs = _padded(k, g.seq_k, g.off_k, s, g.max_k), _padded(v, g.seq_k, g.off_k, s, g.max_k)
    o = _sdpa(qs, ks, vs, g.mask, scale, causal=g.mask is None)
    return o.transpose(1, 2)[g.seq_q, g.off_q]


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                     cu_seqlens_k: torch.Tensor, scale: float,
                     block_tables: torch.Tensor | None = None) -> torch.Tensor:
    """Same contract as kernels.attention.varlen_attention_reference: causal attention over
    packed sequences, q [Nq, Hq, D]; k, v packed [Nk, Hk, D] or, with block_tables
    [S, max_blocks], paged caches [num_blocks, block_size, Hk, D]; queries are the last
    len_q(s) positions of their sequence. -> [Nq, Hq, D] in q.dtype (differentiable)."""
    plan = _plan(cu_seqlens_q, cu_seqlens_k, block_tables is not None)
    outs = [_attend_group(g, q, k, v, scale, block_tables) for g in plan.groups]
    if plan.rows is None:
        return outs[0]
    return q.new_zeros(q.shape).index_put((plan.rows,), torch.cat(outs))


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor,
                           scale: float) -> torch.Tensor:
    """Same contract as kernels.paged_attention.paged_decode_attention_reference: q [B, Hq, D],
    caches [num_blocks, block_size, Hk, D], block_tables [B, max_blocks] int32, context_lens
    [B] int32 -> [B, Hq, D]. One gather of every sequence's pages, one masked SDPA."""
    lens = context_lens.long()
    num_keys = int(lens.max())
    ks = _gather_pages(k_cache, block_tables, num_keys)[:, :, :num_keys].to(q.dtype)
    vs = _gather_pages(v_cache, block_tables, num_keys)[:, :, :num_keys].to(q.dtype)
    keep = torch.arange(num_keys, device=q.device)[None, :] < lens[:, None]
    return _one_query_attention(q, ks, vs, _additive(keep)[:, None, None], scale)


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


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Same contract as kernels.rms_norm.rms_norm_reference: torch's one-pass kernel for fp32
    (the same float steps); other dtypes round between steps as HF does, so they take the
    reference."""
    if x.dtype != torch.float32 or weight.dtype != torch.float32:
        return rms_norm_reference(x, weight, eps)
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as kernels.rms_norm.add_rms_norm_reference."""
    s = x + residual
    return rms_norm(s, weight, eps), s


def rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
         cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as kernels.rope.rope_reference, bit for bit: q and k rotate together as
    x * (cos | cos) + (x2 | x1) * (-sin | sin), three elementwise passes instead of six."""
    hq, half = q.shape[1], q.shape[-1] // 2
    factors = _rotation_table(cos_sin)[positions.long()]          # [N, 2, D]
    x = torch.cat((q, k), dim=1).float()
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    out = x * factors[:, None, 0] + swapped * factors[:, None, 1]
    return out[:, :hq].to(q.dtype), out[:, hq:].to(k.dtype)


_last_table: tuple[torch.Tensor, int, torch.Tensor] | None = None


def _rotation_table(cos_sin: torch.Tensor) -> torch.Tensor:
    """cos_sin [P, D] (cos | sin) -> [P, 2, D]: (cos | cos) and (-sin | sin); built once per
    table (the model's rotary buffer) and kept while that tensor is unchanged."""
    global _last_table
    if _last_table is None or _last_table[0] is not cos_sin or _last_table[1] != cos_sin._version:
        half = cos_sin.shape[-1] // 2
        cos, sin = cos_sin[:, :half], cos_sin[:, half:]
        table = torch.stack((torch.cat((cos, cos), -1), torch.cat((-sin, sin), -1)), dim=1)
        _last_table = (cos_sin, cos_sin._version, table)
    return _last_table[2]


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
        if not self.k or seq_ids != self.seq_ids:        # the usual step changes nothing here
            keep = _kept_rows(self.seq_ids, seq_ids) if self.k else None
            if keep is None:
                if not self._gather(kv_caches, len(seq_ids), block_tables, num_keys):
                    return False
            else:                                          # finished sequences drop out
                index = torch.tensor(keep)
                self.k = [x.index_select(0, index) for x in self.k]
                self.v = [x.index_select(0, index) for x in self.v]
            self.seq_ids = list(seq_ids)
        if num_keys > self.k[0].shape[2]:
            self._grow(num_keys, kv_caches[0][0].shape[1])
        # flat row of each (sequence, KV head)'s new key in a [B * Hk * capacity, D] view
        b, hk, capacity = len(seq_ids), self.k[0].shape[1], self.k[0].shape[2]
        self.new_rows = ((torch.arange(b)[:, None] * hk + torch.arange(hk)[None, :]) * capacity
                         + positions[:, None]).reshape(-1)
        self.num_keys = num_keys
        self.mask = _additive(torch.arange(num_keys)[None, :] <= positions[:, None])[:, None, None]
        return True

    def _gather(self, kv_caches, num_seqs: int, block_tables: torch.Tensor, num_keys: int) -> bool:
        """A fresh dense copy from the pages, one block of room to grow; False if too big."""
        k_cache = kv_caches[0][0]
        block_size, hk, d = k_cache.shape[1:]
        capacity = _room(num_keys, block_size)
        row_bytes = 2 * len(kv_caches) * hk * d * k_cache.element_size()
        if num_seqs * capacity * row_bytes > self.max_bytes:
            self.reset()
            return False
        width = capacity // block_size
        tables = torch.zeros(num_seqs, width, dtype=block_tables.dtype)
        tables[:, :block_tables.shape[1]] = block_tables[:, :width]
        self.k = [_gather_pages(kc, tables, capacity).contiguous() for kc, _ in kv_caches]
        self.v = [_gather_pages(vc, tables, capacity).contiguous() for _, vc in kv_caches]
        return True

    def _grow(self, num_keys: int, block_size: int) -> None:
        """More rows by copying the dense copy itself (cheaper than re-gathering pages). Little
        room is kept: a bigger copy costs more in cache misses than the occasional growth."""
        b, hk, old, d = self.k[0].shape
        capacity = _room(num_keys, block_size)

        def grown(x: torch.Tensor) -> torch.Tensor:
            y = x.new_zeros(b, hk, capacity, d)    # zeros: masked rows must stay finite
            y[:, :, :old] = x
            return y
        self.k, self.v = [grown(x) for x in self.k], [grown(x) for x in self.v]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               scale: float) -> torch.Tensor:
        """q [B, Hq, D], this step's k, v [B, Hk, D] -> [B, Hq, D] over the whole context."""
        ks, vs = self.k[layer], self.v[layer]
        d = ks.shape[-1]
        ks.view(-1, d).index_copy_(0, self.new_rows, k.reshape(-1, d).to(ks.dtype))
        vs.view(-1, d).index_copy_(0, self.new_rows, v.reshape(-1, d).to(vs.dtype))
        n = self.num_keys
        return _one_query_attention(q, ks[:, :, :n].to(q.dtype), vs[:, :, :n].to(q.dtype),
                                    self.mask, scale)


def _room(num_keys: int, block_size: int) -> int:
    """Rows for num_keys keys and at least one block more, in whole blocks."""
    return -(-(num_keys + block_size) // block_size) * block_size


def _kept_rows(old: list[int], new: list[int]) -> list[int] | None:
    """Indices into `old` giving `new`, when `new` only drops entries of `old` (in order)."""
    where = {s: i for i, s in enumerate(old)}
    rows = [where.get(s) for s in new]
    if any(r is None for r in rows) or rows != sorted(rows):
        return None
    return rows
