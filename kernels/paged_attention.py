"""Decode attention: one query token per sequence against a paged KV cache."""
import torch
import triton
import triton.language as tl

from kernels.attention import gather_paged_kv
from kernels.triton_support import INTERPRET, LOG2E, check_head_dim, device_sms, dot_precision, mma


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


# ----------------------------------------------------------------------------- Triton
#
# Flash-decoding: with one query per sequence, a (sequence, KV head) grid alone leaves most of
# the GPU idle at small batch, so each sequence's context is also cut into `num_splits` pieces.
# Each split writes a partial output and its log-sum-exp; a second kernel merges the splits.
# All query heads of a GQA group share one program, so every K/V tile is loaded once and used
# through one tensor-core matmul (the group is padded to 16 rows for tl.dot). The split count
# depends only on shapes, never on the lengths' values, so the launch is CUDA-graph safe.


@triton.jit
def _paged_decode_split_kernel(Q, K_CACHE, V_CACHE, BLOCK_TABLES, CONTEXT_LENS, PART_OUT, PART_LSE,
                               scale_log2, group, page_size, num_splits,
                               stride_qb, stride_qh, stride_kb, stride_ks, stride_kh,
                               stride_vb, stride_vs, stride_vh, stride_bt,
                               PRECISION: tl.constexpr, BLOCK_G: tl.constexpr,
                               BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    b = tl.program_id(0)
    hk = tl.program_id(1)
    split = tl.program_id(2)
    context = tl.load(CONTEXT_LENS + b)
    split_len = tl.cdiv(tl.cdiv(context, num_splits), BLOCK_N) * BLOCK_N
    start = split * split_len
    end = tl.minimum(start + split_len, context)
    g = tl.arange(0, BLOCK_G)
    heads = hk * group + g
    d = tl.arange(0, HEAD_DIM)[None, :]
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + d, mask=(g < group)[:, None],
                other=0.0)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    K_CACHE += hk * stride_kh
    V_CACHE += hk * stride_vh
    for n0 in range(start, end, BLOCK_N):
        t = n0 + tl.arange(0, BLOCK_N)
        t_ok = t < end
        page = tl.load(BLOCK_TABLES + b * stride_bt + t // page_size, mask=t_ok, other=0)
        page = page.to(tl.int64)[:, None]
        slot = (t % page_size).to(tl.int64)[:, None]
        k = tl.load(K_CACHE + page * stride_kb + slot * stride_ks + d, mask=t_ok[:, None],
                    other=0.0)
        s = mma(q, tl.trans(k), tl.zeros([BLOCK_G, BLOCK_N], tl.float32), PRECISION) * scale_log2
        s = tl.where(t_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(V_CACHE + page * stride_vb + slot * stride_vs + d, mask=t_ok[:, None],
                    other=0.0)
        acc = mma(p.to(v.dtype), v, acc * alpha[:, None], PRECISION)
        m_i = m_new
    # an empty split (short context) leaves l_i = 0: partial output 0 with weight exp2(-inf)
    has_keys = l_i > 0.0
    l_i = tl.where(has_keys, l_i, 1.0)
    lse = tl.where(has_keys, m_i + tl.log2(l_i), float("-inf"))
    part = ((b * tl.num_programs(1) * group + heads) * num_splits + split).to(tl.int64)
    g_ok = g < group
    tl.store(PART_OUT + part[:, None] * HEAD_DIM + d, acc / l_i[:, None], mask=g_ok[:, None])
    tl.store(PART_LSE + part, lse, mask=g_ok)


@triton.jit
def _paged_decode_reduce_kernel(PART_OUT, PART_LSE, O, num_splits, stride_ob, stride_oh,
                                BLOCK_S: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Merge the splits of one (sequence, query head): weights exp2(lse_s - max lse)."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    first = ((b * tl.num_programs(1) + h) * num_splits).to(tl.int64)
    s = tl.arange(0, BLOCK_S)
    s_ok = s < num_splits
    lse = tl.load(PART_LSE + first + s, mask=s_ok, other=float("-inf"))
    m = tl.max(lse, axis=0)
    m = tl.where(m == float("-inf"), 0.0, m)       # no keys at all: output 0, not NaN
    w = tl.exp2(lse - m)
    d = tl.arange(0, HEAD_DIM)[None, :]
    parts = tl.load(PART_OUT + (first + s)[:, None] * HEAD_DIM + d, mask=s_ok[:, None], other=0.0)
    total = tl.sum(w, axis=0)
    out = tl.sum(w[:, None] * parts, axis=0) / tl.where(total > 0.0, total, 1.0)
    tl.store(O + b * stride_ob + h * stride_oh + tl.arange(0, HEAD_DIM), out.to(O.dtype.element_ty))


def _num_splits(batch: int, h_k: int, capacity: int, sms: int) -> int:
    """Enough (sequence, head, split) programs to fill the GPU about twice, splits of at least
    ~256 keys when the block table is full, at most 64."""
    if INTERPRET:
        return 3
    want = triton.cdiv(2 * sms, max(1, batch * h_k))
    return max(1, min(want, triton.cdiv(capacity, 256), 64))


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor,
                           scale: float) -> torch.Tensor:
    """Triton flash-decoding. q [B, Hq, D]; caches [num_blocks, block_size, Hk, D];
    block_tables [B, max_blocks] int32; context_lens [B] int32 (keys 0..len-1, the new token's
    K/V already stored). Hq % Hk == 0; D a power of two >= 16. Returns [B, Hq, D] in q.dtype.
    No host sync, so it can be captured in a CUDA graph."""
    batch, h_q, head_dim = q.shape
    _, page_size, h_k, _ = k_cache.shape
    if v_cache.shape != k_cache.shape or k_cache.shape[-1] != head_dim or h_q % h_k:
        raise ValueError(f"paged_decode_attention: q {tuple(q.shape)}, caches "
                         f"{tuple(k_cache.shape)} / {tuple(v_cache.shape)} do not match")
    if block_tables.shape[0] != batch or context_lens.shape != (batch,):
        raise ValueError(f"paged_decode_attention: block_tables {tuple(block_tables.shape)} and "
                         f"context_lens {tuple(context_lens.shape)} need {batch} rows")
    check_head_dim(head_dim, "paged_decode_attention")
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("paged_decode_attention: caches need a contiguous last dimension")
    out = torch.empty((batch, h_q, head_dim), dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    group = h_q // h_k
    splits = _num_splits(batch, h_k, block_tables.shape[1] * page_size, device_sms(q))
    part_out = torch.empty((batch, h_q, splits, head_dim), dtype=torch.float32, device=q.device)
    part_lse = torch.empty((batch, h_q, splits), dtype=torch.float32, device=q.device)
    block_n = 16 if INTERPRET else 64
    _paged_decode_split_kernel[(batch, h_k, splits)](
        q, k_cache, v_cache, block_tables, context_lens, part_out, part_lse, scale * LOG2E, group,
        page_size, splits, q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1),
        k_cache.stride(2), v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0), PRECISION=dot_precision(q.dtype),
        BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n, HEAD_DIM=head_dim,
        num_warps=4, num_stages=2)
    _paged_decode_reduce_kernel[(batch, h_q)](
        part_out, part_lse, out, splits, out.stride(0), out.stride(1),
        BLOCK_S=triton.next_power_of_2(splits), HEAD_DIM=head_dim,
        num_warps=1 if head_dim <= 64 else 2)
    return out
