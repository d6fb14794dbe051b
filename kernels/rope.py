"""Rotary position embedding, half-rotation layout (Qwen, Llama), driven by per-token positions."""
import torch
import triton
import triton.language as tl


def rope_reference(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
                   cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q [N, Hq, D], k [N, Hk, D], positions [N] int, cos_sin [max_pos, D] fp32 whose first
    D/2 columns are cos and last D/2 are sin of position * inv_freq. Returns rotated (q, k)
    in their input dtypes; the rotation itself is computed in fp32."""
    half = q.shape[-1] // 2
    cs = cos_sin[positions.long()]
    cos, sin = cs[:, None, :half], cs[:, None, half:]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.float()[..., :half], x.float()[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    return rotate(q), rotate(k)


# ----------------------------------------------------------------------------- Triton


@triton.jit
def _rotate_heads(X, OUT, stride_xh, stride_oh, H, HALF, cos, sin,
                  BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr):
    """One token's H heads: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), in fp32."""
    h = tl.arange(0, BLOCK_H)[:, None]
    d = tl.arange(0, BLOCK_HALF)[None, :]
    mask = (h < H) & (d < HALF)
    x1 = tl.load(X + h * stride_xh + d, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(X + h * stride_xh + HALF + d, mask=mask, other=0.0).to(tl.float32)
    out_ty = OUT.dtype.element_ty
    tl.store(OUT + h * stride_oh + d, (x1 * cos - x2 * sin).to(out_ty), mask=mask)
    tl.store(OUT + h * stride_oh + HALF + d, (x2 * cos + x1 * sin).to(out_ty), mask=mask)


@triton.jit
def _rope_kernel(Q, K, Q_OUT, K_OUT, POSITIONS, COS_SIN,
                 stride_qn, stride_qh, stride_kn, stride_kh,
                 stride_qon, stride_qoh, stride_kon, stride_koh, stride_cs,
                 HQ, HK, HALF, SIN_SIGN: tl.constexpr,
                 BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_HALF: tl.constexpr):
    """One program per token rotates all its q and k heads. SIN_SIGN=-1 rotates by -angle,
    which is the backward of the rotation (its transpose)."""
    tok = tl.program_id(0).to(tl.int64)
    pos = tl.load(POSITIONS + tok).to(tl.int64)
    d = tl.arange(0, BLOCK_HALF)[None, :]
    cos = tl.load(COS_SIN + pos * stride_cs + d, mask=d < HALF, other=0.0).to(tl.float32)
    sin = tl.load(COS_SIN + pos * stride_cs + HALF + d, mask=d < HALF, other=0.0).to(tl.float32)
    sin = sin * SIN_SIGN
    _rotate_heads(Q + tok * stride_qn, Q_OUT + tok * stride_qon, stride_qh, stride_qoh, HQ, HALF,
                  cos, sin, BLOCK_HQ, BLOCK_HALF)
    _rotate_heads(K + tok * stride_kn, K_OUT + tok * stride_kon, stride_kh, stride_koh, HK, HALF,
                  cos, sin, BLOCK_HK, BLOCK_HALF)


def _heads_view(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _rotate(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor,
            sin_sign: int) -> tuple[torch.Tensor, torch.Tensor]:
    q, k = _heads_view(q), _heads_view(k)
    N, HQ, D = q.shape
    HK = k.shape[1]
    q_out = torch.empty((N, HQ, D), dtype=q.dtype, device=q.device)
    k_out = torch.empty((N, HK, D), dtype=k.dtype, device=k.device)
    if N == 0:
        return q_out, k_out
    half = D // 2
    block_hq, block_hk = triton.next_power_of_2(HQ), triton.next_power_of_2(HK)
    block_half = triton.next_power_of_2(half)
    warps = 4 if (block_hq + block_hk) * block_half <= 4096 else 8
    _rope_kernel[(N,)](q, k, q_out, k_out, positions, cos_sin,
                       q.stride(0), q.stride(1), k.stride(0), k.stride(1),
                       q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1),
                       cos_sin.stride(0), HQ, HK, half, SIN_SIGN=sin_sign,
                       BLOCK_HQ=block_hq, BLOCK_HK=block_hk, BLOCK_HALF=block_half,
                       num_warps=warps)
    return q_out, k_out


class _RopeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, positions, cos_sin):
        ctx.save_for_backward(positions, cos_sin)
        return _rotate(q, k, positions, cos_sin, 1)

    @staticmethod
    def backward(ctx, dq, dk):
        positions, cos_sin = ctx.saved_tensors
        return (*_rotate(dq, dk, positions, cos_sin, -1), None, None)


def rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
         cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton rotary embedding, half-rotation layout. q [N, Hq, D], k [N, Hk, D] (strided views
    allowed, last dim contiguous), positions [N] int32/int64, cos_sin [max_pos, D] fp32 (cos in
    the first D/2 columns, sin in the last). Returns new (q, k) in their dtypes; differentiable
    in q and k (the backward rotates by -angle)."""
    if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"rope: q {tuple(q.shape)} and k {tuple(k.shape)} must be [N, H, D] "
                         "with the same N and D")
    if cos_sin.shape[-1] != q.shape[-1] or q.shape[-1] % 2:
        raise ValueError(f"rope: cos_sin last dim {cos_sin.shape[-1]} must equal the even head "
                         f"dim {q.shape[-1]}")
    if positions.shape != (q.shape[0],):
        raise ValueError(f"rope: positions shape {tuple(positions.shape)} != ({q.shape[0]},)")
    return _RopeFunction.apply(q, k, positions, cos_sin.contiguous())
