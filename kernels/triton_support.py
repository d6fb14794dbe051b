"""What the Triton kernels share: interpreter awareness, matmul precision, device facts.

Under `TRITON_INTERPRET=1` (CPU tests) kernels run through numpy; two things differ there and
are handled here so the kernels themselves stay the GPU code:
- the interpreter multiplies bf16 tiles as their raw uint16 bits, so `mma` widens operands to
  fp32 first (exact for bf16/fp16, so results equal the GPU's fp32-accumulated dot);
- launchers pick small tiles so tiny test shapes still cross several tiles.
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_WIDEN_DOT_OPERANDS = tl.constexpr(INTERPRET)

LOG2E = 1.4426950408889634  # exp(x) == exp2(x * LOG2E); kernels fold it into the softmax scale


@triton.jit
def mma(a, b, acc, PRECISION: tl.constexpr):
    """acc + a @ b with fp32 accumulation (tensor cores for bf16/fp16, `PRECISION` for fp32)."""
    if _WIDEN_DOT_OPERANDS:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    else:
        return tl.dot(a, b, acc, input_precision=PRECISION)


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs get 3xTF32 products: fp32-level accuracy on tensor cores, where plain TF32
    would miss the reference by ~1e-3 and "ieee" (FMA) spills registers in the attention tiles
    on sm_90. bf16/fp16 ignore the setting."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


@functools.lru_cache(maxsize=None)
def num_sms(device_index: int) -> int:
    if not torch.cuda.is_available():
        return 4
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def device_sms(t: torch.Tensor) -> int:
    return num_sms(t.device.index or 0) if t.is_cuda else num_sms(-1)


def check_head_dim(head_dim: int, what: str) -> None:
    if head_dim < 16 or head_dim & (head_dim - 1):
        raise ValueError(f"{what}: head_dim {head_dim} is not supported; the Triton attention "
                         "kernels need a power of two >= 16")


def rows_view(x: torch.Tensor) -> torch.Tensor:
    """[..., D] -> [M, D] whose last dimension is contiguous (a view when possible)."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()
