"""Causal varlen attention over packed sequences (prefill and training)."""
import functools

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.triton_support import INTERPRET, LOG2E, check_head_dim, dot_precision, mma


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


# ----------------------------------------------------------------------------- Triton
#
# FlashAttention-2 over packed sequences. Programs are laid over the tiles of all sequences
# end to end (grid = cdiv(N, BLOCK) + S bounds the tile count), so the host never has to read
# the longest length back from the GPU; `_tile_of_program` maps a program to its
# (sequence, tile). Scores live in log2 units (scale * log2 e folded in) so softmax uses exp2,
# and the saved log-sum-exp is in those units too. In the forward and dQ kernels, key tiles
# that every query row of a tile can see skip the causal mask; only tiles crossing the
# diagonal pay for it. The backward recomputes P from the saved log-sum-exp (FA2).


@triton.jit
def _tile_of_program(CU_SEQLENS, num_seqs, pid, BLOCK: tl.constexpr, SEQ_BLOCK: tl.constexpr):
    """-> (sequence, tile within it, tiles in that sequence); sequence >= num_seqs means the
    program has no work."""
    i = tl.arange(0, SEQ_BLOCK)
    valid = i < num_seqs
    starts = tl.load(CU_SEQLENS + i, mask=valid, other=0)
    ends = tl.load(CU_SEQLENS + i + 1, mask=valid, other=0)
    tiles = (ends - starts + BLOCK - 1) // BLOCK
    seq = tl.sum((tl.cumsum(tiles, axis=0) <= pid).to(tl.int32), axis=0)
    tile = pid - tl.sum(tl.where(i < seq, tiles, 0), axis=0)
    n_tiles = tl.sum(tl.where(i == seq, tiles, 0), axis=0)
    return seq, tile, n_tiles


@triton.jit
def _key_offsets(BT, seq, cols, k_start, len_k, stride_bt, page_size,
                 stride_kn, stride_kb, stride_vn, stride_vb, PAGED: tl.constexpr):
    """Element offsets of key rows `cols` (0-based within the sequence) in K and V: packed
    rows, or pages looked up in the sequence's block table."""
    if PAGED:
        page = tl.load(BT + seq * stride_bt + cols // page_size, mask=cols < len_k, other=0)
        page = page.to(tl.int64)
        slot = (cols % page_size).to(tl.int64)
        return page * stride_kb + slot * stride_kn, page * stride_vb + slot * stride_vn
    else:
        row = (k_start + cols).to(tl.int64)
        return row * stride_kn, row * stride_vn


@triton.jit
def _fwd_key_tiles(acc, l_i, m_i, q, K, V, BT, seq, k_start, len_k, rows, offset, lo, hi,
                   stride_bt, page_size, stride_kn, stride_kb, stride_vn, stride_vb, scale_log2,
                   MASKED: tl.constexpr, PAGED: tl.constexpr, PRECISION: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    d = tl.arange(0, HEAD_DIM)[None, :]
    for n0 in range(lo, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        k_off, v_off = _key_offsets(BT, seq, cols, k_start, len_k, stride_bt, page_size,
                                    stride_kn, stride_kb, stride_vn, stride_vb, PAGED)
        if MASKED:
            k = tl.load(K + k_off[:, None] + d, mask=(cols < len_k)[:, None], other=0.0)
        else:
            k = tl.load(K + k_off[:, None] + d)
        s = mma(q, tl.trans(k), tl.zeros([BLOCK_M, BLOCK_N], tl.float32), PRECISION) * scale_log2
        if MASKED:   # bottom-right causal: query row r sees keys j <= r + (len_k - len_q)
            visible = (cols[None, :] <= rows[:, None] + offset) & (cols[None, :] < len_k)
            s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if MASKED:
            v = tl.load(V + v_off[:, None] + d, mask=(cols < len_k)[:, None], other=0.0)
        else:
            v = tl.load(V + v_off[:, None] + d)
        acc = mma(p.to(v.dtype), v, acc * alpha[:, None], PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd_kernel(Q, K, V, O, LSE, CU_Q, CU_K, BT, num_seqs, group, scale_log2,
                     stride_qn, stride_qh, stride_kn, stride_kh, stride_kb,
                     stride_vn, stride_vh, stride_vb, stride_on, stride_oh, stride_lse,
                     stride_bt, page_size,
                     PAGED: tl.constexpr, PRECISION: tl.constexpr, SEQ_BLOCK: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    seq, tile, n_tiles = _tile_of_program(CU_Q, num_seqs, tl.program_id(0), BLOCK_M, SEQ_BLOCK)
    if seq >= num_seqs:
        return
    tile = n_tiles - 1 - tile          # a sequence's last (longest) query tiles start first
    h = tl.program_id(1)
    hk = h // group                    # GQA: K/V are read through their shared head
    q_start = tl.load(CU_Q + seq)
    len_q = tl.load(CU_Q + seq + 1) - q_start
    k_start = tl.load(CU_K + seq)
    len_k = tl.load(CU_K + seq + 1) - k_start
    offset = len_k - len_q
    m0 = tile * BLOCK_M
    rows = m0 + tl.arange(0, BLOCK_M)
    row_ok = rows < len_q
    q_rows = (q_start + rows).to(tl.int64)
    d = tl.arange(0, HEAD_DIM)[None, :]
    q = tl.load(Q + q_rows[:, None] * stride_qn + h * stride_qh + d, mask=row_ok[:, None],
                other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    # keys [0, full_end) are visible to every row of the tile; [full_end, causal_end) need the mask
    full_end = tl.maximum((m0 + offset + 1) // BLOCK_N * BLOCK_N, 0)
    causal_end = tl.minimum(m0 + BLOCK_M + offset, len_k)
    K += hk * stride_kh
    V += hk * stride_vh
    acc, l_i, m_i = _fwd_key_tiles(acc, l_i, m_i, q, K, V, BT, seq, k_start, len_k, rows, offset,
                                   0, full_end, stride_bt, page_size, stride_kn, stride_kb,
                                   stride_vn, stride_vb, scale_log2, False, PAGED, PRECISION,
                                   BLOCK_M, BLOCK_N, HEAD_DIM)
    acc, l_i, m_i = _fwd_key_tiles(acc, l_i, m_i, q, K, V, BT, seq, k_start, len_k, rows, offset,
                                   full_end, causal_end, stride_bt, page_size, stride_kn,
                                   stride_kb, stride_vn, stride_vb, scale_log2, True, PAGED,
                                   PRECISION, BLOCK_M, BLOCK_N, HEAD_DIM)
    l_i = tl.where(l_i > 0.0, l_i, 1.0)    # a row without keys (len_k < len_q) gives 0
    tl.store(O + q_rows[:, None] * stride_on + h * stride_oh + d,
             (acc / l_i[:, None]).to(O.dtype.element_ty), mask=row_ok[:, None])
    tl.store(LSE + h * stride_lse + q_rows, m_i + tl.log2(l_i), mask=row_ok)


@triton.jit
def _attn_bwd_delta_kernel(O, DO, DELTA, N, stride_on, stride_oh, stride_don, stride_doh,
                           stride_delta, BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr):
    """delta = rowsum(O * dO), the softmax-backward correction term, per (head, token)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    h = tl.program_id(1)
    r64 = rows.to(tl.int64)[:, None]
    d = tl.arange(0, HEAD_DIM)[None, :]
    mask = (rows < N)[:, None]
    o = tl.load(O + r64 * stride_on + h * stride_oh + d, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + r64 * stride_don + h * stride_doh + d, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + h * stride_delta + rows, tl.sum(o * do, axis=1), mask=rows < N)


@triton.jit
def _attn_bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, CU_Q, CU_K, num_seqs, group,
                          scale_log2, sm_scale,
                          stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh,
                          stride_don, stride_doh, stride_dkn, stride_dkh, stride_dvn, stride_dvh,
                          stride_lse,
                          PRECISION: tl.constexpr, SEQ_BLOCK: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """One program per (key tile, KV head) visits every (query head of its GQA group, query
    tile that sees the keys), so dK and dV are written once, without atomics. The visits are
    one flat loop: a loop nest around the pipelined loads doubled the register use on sm_90.
    Scores are kept transposed, [BLOCK_N, BLOCK_M], so no tile is transposed twice."""
    seq, tile, n_tiles = _tile_of_program(CU_K, num_seqs, tl.program_id(0), BLOCK_N, SEQ_BLOCK)
    if seq >= num_seqs:
        return
    hk = tl.program_id(1)
    q_start = tl.load(CU_Q + seq)
    len_q = tl.load(CU_Q + seq + 1) - q_start
    k_start = tl.load(CU_K + seq)
    len_k = tl.load(CU_K + seq + 1) - k_start
    offset = len_k - len_q
    n0 = tile * BLOCK_N
    cols = n0 + tl.arange(0, BLOCK_N)
    col_ok = (cols < len_k)[:, None]
    k_rows = (k_start + cols).to(tl.int64)[:, None]
    d = tl.arange(0, HEAD_DIM)[None, :]
    k = tl.load(K + k_rows * stride_kn + hk * stride_kh + d, mask=col_ok, other=0.0)
    v = tl.load(V + k_rows * stride_vn + hk * stride_vh + d, mask=col_ok, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    # query row r sees key j when r >= j - offset: the first tile that sees key n0 starts at lo
    lo = tl.maximum(n0 - offset, 0) // BLOCK_M * BLOCK_M
    tiles_per_head = tl.cdiv(len_q - lo, BLOCK_M)
    for i in range(0, group * tiles_per_head):
        g = i // tiles_per_head
        h = hk * group + g
        rows = lo + (i - g * tiles_per_head) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < len_q
        q_rows = (q_start + rows).to(tl.int64)
        q = tl.load(Q + q_rows[:, None] * stride_qn + h * stride_qh + d, mask=row_ok[:, None],
                    other=0.0)
        do = tl.load(DO + q_rows[:, None] * stride_don + h * stride_doh + d,
                     mask=row_ok[:, None], other=0.0)
        # padding rows load lse = inf, so their probabilities are exactly 0
        lse = tl.load(LSE + h * stride_lse + q_rows, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA + h * stride_lse + q_rows, mask=row_ok, other=0.0)
        s_t = mma(k, tl.trans(q), tl.zeros([BLOCK_N, BLOCK_M], tl.float32), PRECISION)
        p_t = tl.exp2(s_t * scale_log2 - lse[None, :])
        p_t = tl.where(cols[:, None] <= rows[None, :] + offset, p_t, 0.0)
        dv = mma(p_t.to(do.dtype), do, dv, PRECISION)
        dp_t = mma(v, tl.trans(do), tl.zeros([BLOCK_N, BLOCK_M], tl.float32), PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = mma(ds_t.to(q.dtype), q, dk, PRECISION)
    dk = (dk * sm_scale).to(DK.dtype.element_ty)
    tl.store(DK + k_rows * stride_dkn + hk * stride_dkh + d, dk, mask=col_ok)
    tl.store(DV + k_rows * stride_dvn + hk * stride_dvh + d, dv.to(DV.dtype.element_ty),
             mask=col_ok)


@triton.jit
def _dq_key_tiles(dq, q, do, lse, delta, K, V, k_start, len_k, rows, offset, lo, hi,
                  stride_kn, stride_vn, scale_log2, MASKED: tl.constexpr, PRECISION: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    d = tl.arange(0, HEAD_DIM)[None, :]
    for n0 in range(lo, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        k_rows = (k_start + cols).to(tl.int64)[:, None]
        if MASKED:
            k = tl.load(K + k_rows * stride_kn + d, mask=(cols < len_k)[:, None], other=0.0)
            v = tl.load(V + k_rows * stride_vn + d, mask=(cols < len_k)[:, None], other=0.0)
        else:
            k = tl.load(K + k_rows * stride_kn + d)
            v = tl.load(V + k_rows * stride_vn + d)
        s = mma(q, tl.trans(k), tl.zeros([BLOCK_M, BLOCK_N], tl.float32), PRECISION)
        p = tl.exp2(s * scale_log2 - lse[:, None])
        if MASKED:
            visible = (cols[None, :] <= rows[:, None] + offset) & (cols[None, :] < len_k)
            p = tl.where(visible, p, 0.0)
        dp = mma(do, tl.trans(v), tl.zeros([BLOCK_M, BLOCK_N], tl.float32), PRECISION)
        ds = p * (dp - delta[:, None])
        dq = mma(ds.to(k.dtype), k, dq, PRECISION)
    return dq


@triton.jit
def _attn_bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, CU_Q, CU_K, num_seqs, group,
                        scale_log2, sm_scale,
                        stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh,
                        stride_don, stride_doh, stride_dqn, stride_dqh, stride_lse,
                        PRECISION: tl.constexpr, SEQ_BLOCK: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    seq, tile, n_tiles = _tile_of_program(CU_Q, num_seqs, tl.program_id(0), BLOCK_M, SEQ_BLOCK)
    if seq >= num_seqs:
        return
    tile = n_tiles - 1 - tile
    h = tl.program_id(1)
    hk = h // group
    q_start = tl.load(CU_Q + seq)
    len_q = tl.load(CU_Q + seq + 1) - q_start
    k_start = tl.load(CU_K + seq)
    len_k = tl.load(CU_K + seq + 1) - k_start
    offset = len_k - len_q
    m0 = tile * BLOCK_M
    rows = m0 + tl.arange(0, BLOCK_M)
    row_ok = rows < len_q
    q_rows = (q_start + rows).to(tl.int64)
    d = tl.arange(0, HEAD_DIM)[None, :]
    q = tl.load(Q + q_rows[:, None] * stride_qn + h * stride_qh + d, mask=row_ok[:, None],
                other=0.0)
    do = tl.load(DO + q_rows[:, None] * stride_don + h * stride_doh + d, mask=row_ok[:, None],
                 other=0.0)
    lse = tl.load(LSE + h * stride_lse + q_rows, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + h * stride_lse + q_rows, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    full_end = tl.maximum((m0 + offset + 1) // BLOCK_N * BLOCK_N, 0)
    causal_end = tl.minimum(m0 + BLOCK_M + offset, len_k)
    K += hk * stride_kh
    V += hk * stride_vh
    dq = _dq_key_tiles(dq, q, do, lse, delta, K, V, k_start, len_k, rows, offset, 0, full_end,
                       stride_kn, stride_vn, scale_log2, False, PRECISION, BLOCK_M, BLOCK_N,
                       HEAD_DIM)
    dq = _dq_key_tiles(dq, q, do, lse, delta, K, V, k_start, len_k, rows, offset, full_end,
                       causal_end, stride_kn, stride_vn, scale_log2, True, PRECISION, BLOCK_M,
                       BLOCK_N, HEAD_DIM)
    tl.store(DQ + q_rows[:, None] * stride_dqn + h * stride_dqh + d,
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])


# Tile candidates (BLOCK_M, BLOCK_N, warps, stages) per head_dim class; the autotuner keeps
# the fastest per head_dim and dtype. Every bf16/fp16 candidate compiles for sm_90 without
# register spills under triton 3.6 (the GPU image's) and the installed triton:
# benchmarks/aot_compile.py checks it, benchmarks/results/aot_sm90_triton*.md records it.
# 128-row tiles take 8 warps (two warpgroups): with 4 they spill. fp32 inputs (3xTF32
# products) get small tiles: that path is for correctness checks, not speed, and some of its
# tiles spill (recorded in the same tables), but all fit in shared memory. The interpreter
# runs one small shape so that tiny test sequences still span several tiles.
_TILES = {
    "fwd": {"d64": [(128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3)],
            "d128": [(128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3)],
            "large": [(128, 32, 8, 2), (64, 32, 8, 2), (32, 32, 4, 2)],
            "fp32": [(64, 32, 4, 2), (64, 64, 4, 2)],
            "fp32_large": [(32, 32, 4, 2)]},
    "dkdv": {"d64": [(32, 64, 4, 3), (64, 64, 4, 2), (64, 128, 8, 2)],
             "d128": [(32, 64, 4, 3), (32, 128, 8, 3), (16, 64, 4, 3)],
             "large": [(16, 32, 4, 2), (16, 32, 8, 2), (32, 32, 8, 2)],
             "fp32": [(16, 32, 4, 2), (32, 32, 4, 2)],
             "fp32_large": [(16, 32, 4, 2)]},
    "dq": {"d64": [(64, 64, 4, 3), (128, 64, 8, 2), (128, 32, 8, 3)],
           "d128": [(64, 64, 4, 3), (128, 64, 8, 2)],
           "large": [(32, 32, 4, 2), (32, 64, 4, 2), (64, 32, 8, 2)],
           "fp32": [(32, 32, 4, 2), (64, 32, 4, 2)],
           "fp32_large": [(32, 32, 4, 2)]},
}
_INTERPRETER_TILE = {"fwd": (32, 16), "dkdv": (16, 32), "dq": (32, 16)}
_KERNELS = {"fwd": _attn_fwd_kernel, "dkdv": _attn_bwd_dkdv_kernel, "dq": _attn_bwd_dq_kernel}


def _tile_class(head_dim: int, dtype: torch.dtype) -> str:
    if dtype == torch.float32:      # d256 fp32 tiles of 64 rows need > 227 KiB shared memory
        return "fp32" if head_dim <= 128 else "fp32_large"
    return "d64" if head_dim <= 64 else "d128" if head_dim <= 128 else "large"


@functools.lru_cache(maxsize=None)
def _tuned(kind: str, tile_class: str):
    """The kernel wrapped in an autotuner over the tiles of this head_dim class."""
    if INTERPRET:
        m, n = _INTERPRETER_TILE[kind]
        configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n})]
    else:
        configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st)
                   for m, n, w, st in _TILES[kind][tile_class]]
    key = ["HEAD_DIM", "PAGED"] if kind == "fwd" else ["HEAD_DIM"]
    return triton.autotune(configs, key=key)(_KERNELS[kind])


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _seq_block(num_seqs: int) -> int:
    """Lanes of the sequence-table scan in _tile_of_program. At least 32: with 16, ptxas
    (triton 3.6, the GPU image's) spills registers in the main loop of most d128 tiles
    (benchmarks/results/aot_sm90_*.md)."""
    return max(32, triton.next_power_of_2(num_seqs))


def _attention_forward(q, k, v, cu_q, cu_k, scale, block_tables):
    n_q, h_q, head_dim = q.shape
    num_seqs = cu_q.numel() - 1
    out = torch.empty((n_q, h_q, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((h_q, n_q), dtype=torch.float32, device=q.device)
    if n_q == 0 or num_seqs == 0:
        return out, lse
    paged = block_tables is not None
    if paged:   # caches [num_blocks, page_size, Hk, D]
        k_strides = (k.stride(1), k.stride(2), k.stride(0))
        v_strides = (v.stride(1), v.stride(2), v.stride(0))
        bt, stride_bt, page_size = block_tables, block_tables.stride(0), k.shape[1]
    else:
        k_strides = (k.stride(0), k.stride(1), 0)
        v_strides = (v.stride(0), v.stride(1), 0)
        bt, stride_bt, page_size = cu_k, 0, 1
    grid = lambda meta: (triton.cdiv(n_q, meta["BLOCK_M"]) + num_seqs, h_q)  # noqa: E731
    kernel = _tuned("fwd", _tile_class(head_dim, q.dtype))
    kernel[grid](q, k, v, out, lse, cu_q, cu_k, bt, num_seqs, h_q // k.shape[-2], scale * LOG2E,
                 q.stride(0), q.stride(1), *k_strides, *v_strides, out.stride(0), out.stride(1),
                 lse.stride(0), stride_bt, page_size, PAGED=paged,
                 PRECISION=dot_precision(q.dtype), SEQ_BLOCK=_seq_block(num_seqs),
                 HEAD_DIM=head_dim)
    return out, lse


def _attention_backward(dout, q, k, v, out, lse, cu_q, cu_k, scale):
    n_q, h_q, head_dim = q.shape
    n_k, h_k, _ = k.shape
    num_seqs = cu_q.numel() - 1
    dout = _last_dim_contiguous(dout)
    dq = torch.empty((n_q, h_q, head_dim), dtype=q.dtype, device=q.device)
    dk = torch.empty((n_k, h_k, head_dim), dtype=k.dtype, device=k.device)
    dv = torch.empty((n_k, h_k, head_dim), dtype=v.dtype, device=v.device)
    if n_q == 0 or num_seqs == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    delta = torch.empty_like(lse)
    block = 64 if not INTERPRET else 16
    _attn_bwd_delta_kernel[(triton.cdiv(n_q, block), h_q)](
        out, dout, delta, n_q, out.stride(0), out.stride(1), dout.stride(0), dout.stride(1),
        delta.stride(0), BLOCK_M=block, HEAD_DIM=head_dim)
    common = dict(PRECISION=dot_precision(q.dtype), SEQ_BLOCK=_seq_block(num_seqs),
                  HEAD_DIM=head_dim)
    strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
               dout.stride(0), dout.stride(1))
    group, scale_log2 = h_q // h_k, scale * LOG2E
    grid_k = lambda meta: (triton.cdiv(n_k, meta["BLOCK_N"]) + num_seqs, h_k)  # noqa: E731
    tiles = _tile_class(head_dim, q.dtype)
    _tuned("dkdv", tiles)[grid_k](q, k, v, dout, lse, delta, dk, dv, cu_q, cu_k, num_seqs, group,
                                  scale_log2, scale, *strides, dk.stride(0), dk.stride(1),
                                  dv.stride(0), dv.stride(1), lse.stride(0), **common)
    grid_q = lambda meta: (triton.cdiv(n_q, meta["BLOCK_M"]) + num_seqs, h_q)  # noqa: E731
    _tuned("dq", tiles)[grid_q](q, k, v, dout, lse, delta, dq, cu_q, cu_k, num_seqs, group,
                                scale_log2, scale, *strides, dq.stride(0), dq.stride(1),
                                lse.stride(0), **common)
    return dq, dk, dv


class _VarlenAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, scale):
        out, lse = _attention_forward(q, k, v, cu_q, cu_k, scale, None)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        dq, dk, dv = _attention_backward(dout, q, k, v, out, lse, cu_q, cu_k, ctx.scale)
        return dq, dk, dv, None, None, None


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, scale: float,
                     block_tables: torch.Tensor | None = None) -> torch.Tensor:
    """Triton FlashAttention-2, causal with bottom-right alignment, over packed sequences.

    q [Nq, Hq, D]; k, v [Nk, Hk, D] packed by cu_seqlens_k [S+1] int32, or with block_tables
    [S, max_blocks] int32 paged caches [num_blocks, block_size, Hk, D] (keys 0..len_k(s)-1 of
    sequence s; forward only). Hq % Hk == 0 (GQA, K/V never repeated); D a power of two >= 16;
    bf16/fp16/fp32 with fp32 accumulation; every sequence needs len_k >= len_q. Strided views
    with a contiguous last dim are read in place. Returns [Nq, Hq, D] in q.dtype;
    differentiable in q, k, v when block_tables is None.
    """
    if q.dim() != 3 or k.dim() != (3 if block_tables is None else 4) or k.shape != v.shape:
        raise ValueError(f"varlen_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)} have the wrong ranks or differ")
    if q.shape[-1] != k.shape[-1] or q.shape[1] % k.shape[-2]:
        raise ValueError(f"varlen_attention: q heads {q.shape[1]} must be a multiple of kv heads "
                         f"{k.shape[-2]} and head dims must match ({q.shape[-1]} vs {k.shape[-1]})")
    if cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(f"varlen_attention: cu_seqlens_q {tuple(cu_seqlens_q.shape)} and "
                         f"cu_seqlens_k {tuple(cu_seqlens_k.shape)} differ")
    check_head_dim(q.shape[-1], "varlen_attention")
    q, k, v = _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v)
    if block_tables is not None:
        return _attention_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, block_tables)[0]
    return _VarlenAttentionFunction.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, scale)
