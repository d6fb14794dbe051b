"""The Gumbel-max sampling race as one Triton kernel: one program per row, one pass over the
logits, the same hash and float steps as sampler.gumbel_argmax_reference."""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _mix32(x):
    x ^= x >> 16
    x *= 0x21F0AAAD
    x ^= x >> 15
    x *= 0x735A2D97
    x ^= x >> 15
    return x


@triton.jit
def _gumbel_argmax_kernel(logits_ptr, stride, inv_temp_ptr, thresh_ptr, keys_ptr, out_ptr, V,
                          BLOCK: tl.constexpr):
    row = tl.program_id(0)
    inv_temp = tl.load(inv_temp_ptr + row)
    thresh = tl.load(thresh_ptr + row)
    k0 = tl.load(keys_ptr + 2 * row).to(tl.uint32)
    k1 = tl.load(keys_ptr + 2 * row + 1).to(tl.uint32)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK], dtype=tl.int32)
    for start in range(0, V, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        in_vocab = cols < V
        x = tl.load(logits_ptr + row.to(tl.int64) * stride + cols, mask=in_vocab,
                    other=float("-inf")).to(tl.float32) * inv_temp
        h = _mix32(_mix32(cols.to(tl.uint32) + k0) ^ k1)
        u = ((h >> 9).to(tl.float32) + 0.5) * (1.0 / 8388608.0)
        score = tl.where(in_vocab & (x >= thresh), x - tl.log(-tl.log(u)), float("-inf"))
        better = score > best
        best = tl.where(better, score, best)
        best_idx = tl.where(better, cols, best_idx)
    top = tl.max(best, axis=0)
    idx = tl.min(tl.where(best == top, best_idx, V), axis=0)   # first index among equal maxima
    tl.store(out_ptr + row, idx.to(tl.int64))


def gumbel_argmax_triton(logits: torch.Tensor, inv_temp: torch.Tensor, thresholds: torch.Tensor,
                         keys: torch.Tensor) -> torch.Tensor:
    """Same contract as sampler.gumbel_argmax_reference: logits [B, V] -> token ids [B] int64."""
    logits = logits.contiguous()
    b, v = logits.shape
    out = torch.empty(b, dtype=torch.int64, device=logits.device)
    _gumbel_argmax_kernel[(b,)](logits, logits.stride(0), inv_temp.contiguous(),
                                thresholds.contiguous().float(), keys.contiguous(), out, v, BLOCK=1024)
    return out
