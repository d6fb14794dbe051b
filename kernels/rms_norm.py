"""RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, computed in fp32, returned in x.dtype."""
import torch
import triton
import triton.language as tl

from kernels.triton_support import device_sms, rows_view


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., D], weight [D] -> [..., D] in x.dtype (HF Qwen2/Llama semantics)."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * y.to(x.dtype)


def add_rms_norm_reference(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused residual add: s = x + residual; returns (rms_norm(s), s)."""
    s = x + residual
    return rms_norm_reference(s, weight, eps), s


# ----------------------------------------------------------------------------- Triton


@triton.jit
def _rms_norm_fwd_kernel(X, R, S, Y, W, RSTD, stride_x, stride_r, stride_s, stride_y, D, eps,
                         HAS_RESIDUAL: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        x += tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        s = x.to(S.dtype.element_ty)
        tl.store(S + row * stride_s + cols, s, mask=mask)
        x = s.to(tl.float32)  # the reference normalizes the sum rounded to its dtype
        x_hat_dtype = S.dtype.element_ty
    else:
        x_hat_dtype = X.dtype.element_ty
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / D + eps)
    tl.store(RSTD + row, rstd)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    # round x_hat to the input dtype before the weight, exactly as the reference does
    y = (x * rstd).to(x_hat_dtype).to(tl.float32) * w
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd_kernel(DY, DS, X, W, RSTD, DX, DR, DW_PARTIAL, stride_dy, stride_ds, stride_x,
                         M, D, rows_per_program,
                         HAS_RESIDUAL: tl.constexpr, BLOCK_D: tl.constexpr):
    """Each program owns a run of rows and writes its partial weight gradient to one row of
    DW_PARTIAL; the host sums those rows. X is the normalized input (x, or x + residual)."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_D], dtype=tl.float32)
    row_start = pid.to(tl.int64) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for row in range(row_start, row_end):
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        x_hat = x * rstd
        wdy = w * dy
        dx = (wdy - x_hat * (tl.sum(x_hat * wdy, axis=0) / D)) * rstd
        if HAS_RESIDUAL:
            dx += tl.load(DS + row * stride_ds + cols, mask=mask, other=0.0).to(tl.float32)
            tl.store(DR + row * D + cols, dx.to(DR.dtype.element_ty), mask=mask)
        tl.store(DX + row * D + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * x_hat.to(X.dtype.element_ty).to(tl.float32)
    tl.store(DW_PARTIAL + pid * D + cols, dw, mask=mask)


def _launch_config(D: int, backward: bool = False) -> tuple[int, int]:
    """(BLOCK_D, num_warps): a whole row per program; the backward holds more row-sized values
    live (x, dy, w, dw), so it spreads a row over more threads sooner."""
    block = triton.next_power_of_2(D)
    limits = (1024, 2048) if backward else (1024, 4096)
    return block, (4 if block <= limits[0] else 8 if block <= limits[1] else 16)


class _RMSNormFunction(torch.autograd.Function):
    """(x [, residual]) -> normed [, x + residual]; grads for x, residual and weight."""

    @staticmethod
    def forward(ctx, x, residual, weight, eps):
        shape, D = x.shape, x.shape[-1]
        if weight.shape != (D,):
            raise ValueError(f"rms_norm: weight shape {tuple(weight.shape)} != ({D},)")
        x2 = rows_view(x)
        M = x2.shape[0]
        has_residual = residual is not None
        if has_residual:
            if residual.shape != shape:
                raise ValueError(f"add_rms_norm: residual shape {tuple(residual.shape)} != "
                                 f"x shape {tuple(shape)}")
            r2 = rows_view(residual)
            s2 = torch.empty((M, D), dtype=torch.promote_types(x.dtype, residual.dtype),
                             device=x.device)
        else:
            r2 = s2 = x2
        y2 = torch.empty((M, D), dtype=torch.promote_types(weight.dtype, s2.dtype), device=x.device)
        rstd = torch.empty(M, dtype=torch.float32, device=x.device)
        if M:
            block, warps = _launch_config(D)
            _rms_norm_fwd_kernel[(M,)](x2, r2, s2, y2, weight, rstd, x2.stride(0), r2.stride(0),
                                       s2.stride(0), y2.stride(0), D, eps,
                                       HAS_RESIDUAL=has_residual, BLOCK_D=block, num_warps=warps)
        ctx.save_for_backward(s2 if has_residual else x2, weight, rstd)
        ctx.has_residual, ctx.shape = has_residual, shape
        ctx.dtypes = (x.dtype, residual.dtype if has_residual else None)
        ctx.set_materialize_grads(False)
        if has_residual:
            return y2.view(shape), s2.view(shape)
        return y2.view(shape)

    @staticmethod
    def backward(ctx, dy, ds=None):
        normed_input, weight, rstd = ctx.saved_tensors
        M, D = normed_input.shape
        # an output nobody used arrives as None (materialize_grads is off)
        dy2 = rows_view(dy) if dy is not None else torch.zeros_like(normed_input)
        ds2 = dy2                                    # unused unless there is a residual
        if ctx.has_residual:
            ds2 = rows_view(ds) if ds is not None else torch.zeros_like(normed_input)
        x_dtype, r_dtype = ctx.dtypes
        dx = torch.empty((M, D), dtype=x_dtype, device=dy2.device)
        dr = torch.empty((M, D), dtype=r_dtype, device=dy2.device) if ctx.has_residual else dx
        dw = torch.zeros_like(weight)
        if M:
            programs = min(M, device_sms(dy2) * 4)
            rows_per_program = triton.cdiv(M, programs)
            programs = triton.cdiv(M, rows_per_program)
            dw_partial = torch.empty((programs, D), dtype=torch.float32, device=dy2.device)
            block, warps = _launch_config(D, backward=True)
            _rms_norm_bwd_kernel[(programs,)](dy2, ds2, normed_input, weight, rstd, dx, dr,
                                              dw_partial, dy2.stride(0), ds2.stride(0),
                                              normed_input.stride(0), M, D, rows_per_program,
                                              HAS_RESIDUAL=ctx.has_residual, BLOCK_D=block,
                                              num_warps=warps)
            dw = dw_partial.sum(0).to(weight.dtype)
        if ctx.has_residual:
            return dx.view(ctx.shape), dr.view(ctx.shape), dw, None
        return dx.view(ctx.shape), None, dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Triton RMSNorm. x [..., D] (any float dtype), weight [D] -> [..., D] in the dtype of
    `weight * x` (as the reference); statistics in fp32. Differentiable in x and weight."""
    return _RMSNormFunction.apply(x, None, weight, eps)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused residual add + RMSNorm: s = x + residual; returns (rms_norm(s), s).
    x, residual [..., D]; differentiable in x, residual and weight."""
    return _RMSNormFunction.apply(x, residual, weight, eps)
