"""SwiGLU activation: silu(gate) * up."""
import torch
import torch.nn.functional as F
import triton
import triton.language as tl


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


# ----------------------------------------------------------------------------- Triton


@triton.jit
def _swiglu_fwd_kernel(GATE, UP, OUT, stride_g, stride_u, I, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < I
    g = tl.load(GATE + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(UP + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    # silu is rounded to the input dtype before the product, as the reference computes it
    act = (g * tl.sigmoid(g)).to(GATE.dtype.element_ty).to(tl.float32)
    tl.store(OUT + row * I + cols, (act * u).to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(GATE, UP, DOUT, DGATE, DUP, stride_g, stride_u, stride_do, I,
                       BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < I
    g = tl.load(GATE + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(UP + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    dout = tl.load(DOUT + row * stride_do + cols, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    act = (g * sig).to(GATE.dtype.element_ty).to(tl.float32)
    # d silu(g) / dg = sig * (1 + g * (1 - sig))
    dgate = dout * u * sig * (1.0 + g * (1.0 - sig))
    tl.store(DGATE + row * I + cols, dgate.to(DGATE.dtype.element_ty), mask=mask)
    tl.store(DUP + row * I + cols, (dout * act).to(DUP.dtype.element_ty), mask=mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])   # a view for the usual chunk of a fused gate/up matmul
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _grid(M: int, I: int) -> tuple[tuple[int, int], int, int]:
    block = min(1024, triton.next_power_of_2(I))
    return (M, triton.cdiv(I, block)), block, (4 if block >= 512 else 2)


class _SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        g2, u2 = _rows(gate), _rows(up)
        M, I = g2.shape
        out_dtype = torch.promote_types(gate.dtype, up.dtype)
        out = torch.empty((M, I), dtype=out_dtype, device=gate.device)
        if M:
            grid, block, warps = _grid(M, I)
            _swiglu_fwd_kernel[grid](g2, u2, out, g2.stride(0), u2.stride(0), I, BLOCK=block,
                                     num_warps=warps)
        ctx.save_for_backward(g2, u2)
        ctx.shape = gate.shape
        return out.view(gate.shape)

    @staticmethod
    def backward(ctx, dout):
        g2, u2 = ctx.saved_tensors
        M, I = g2.shape
        do2 = _rows(dout)
        dgate = torch.empty((M, I), dtype=g2.dtype, device=g2.device)
        dup = torch.empty((M, I), dtype=u2.dtype, device=u2.device)
        if M:
            grid, block, warps = _grid(M, I)
            _swiglu_bwd_kernel[grid](g2, u2, do2, dgate, dup, g2.stride(0), u2.stride(0),
                                     do2.stride(0), I, BLOCK=block, num_warps=warps)
        return dgate.view(ctx.shape), dup.view(ctx.shape)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Triton silu(gate) * up. gate, up [..., I] (row-strided views such as the two halves of
    a fused gate/up projection are read in place) -> [..., I]; fp32 math, differentiable."""
    if gate.shape != up.shape:
        raise ValueError(f"swiglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} differ")
    return _SwiGLUFunction.apply(gate, up)
