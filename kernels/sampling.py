"""The Gumbel-max sampling race: token = argmax over kept tokens of logit / T + G, with
G = -log(-log u) and u from a counter-based hash of (row key, vocab id), so a row's draw
depends only on its own key. The torch reference, and one Triton kernel (one program per row,
one pass over the logits) with the same hash and float steps. engine.ops picks between them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_MIX_C1, _MIX_C2 = 0x21F0AAAD, 0x735A2D97     # Wellons' low-bias 32-bit integer hash


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for int64 x in [0, 2^32) without int64 overflow (16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_C1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_C2)
    return x ^ (x >> 15)


def gumbel_noise(keys: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """keys [B, 2] int64 (32-bit values), cols [B, K] or [K] int64 vocab ids -> [B, K] fp32
    Gumbel(0, 1) noise; u = (23 hash bits + 0.5) / 2^23 keeps -log(-log u) finite."""
    h = _mix32(_mix32((cols + keys[:, :1]) & _MASK32) ^ keys[:, 1:])
    u = ((h >> 9).to(torch.float32) + 0.5) * (1.0 / 8388608.0)
    return -torch.log(-torch.log(u))


def gumbel_argmax_reference(logits: torch.Tensor, inv_temp: torch.Tensor, thresholds: torch.Tensor,
                            keys: torch.Tensor) -> torch.Tensor:
    """logits [B, V] (any float dtype), inv_temp [B] fp32, thresholds [B] fp32 (-inf: keep
    all), keys [B, 2] int64 -> sampled token ids [B] int64."""
    x = logits.float() * inv_temp[:, None]
    cols = torch.arange(x.shape[-1], device=x.device, dtype=torch.int64)
    score = torch.where(x >= thresholds[:, None], x + gumbel_noise(keys, cols), float("-inf"))
    return score.argmax(-1)


# ----------------------------------------------------------------------------- Triton


@triton.jit
def _mix32_kernel(x):
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
        h = _mix32_kernel(_mix32_kernel(cols.to(tl.uint32) + k0) ^ k1)
        u = ((h >> 9).to(tl.float32) + 0.5) * (1.0 / 8388608.0)
        score = tl.where(in_vocab & (x >= thresh), x - tl.log(-tl.log(u)), float("-inf"))
        better = score > best
        best = tl.where(better, score, best)
        best_idx = tl.where(better, cols, best_idx)
    top = tl.max(best, axis=0)
    idx = tl.min(tl.where(best == top, best_idx, V), axis=0)   # first index among equal maxima
    tl.store(out_ptr + row, idx.to(tl.int64))


def gumbel_argmax(logits: torch.Tensor, inv_temp: torch.Tensor, thresholds: torch.Tensor,
                         keys: torch.Tensor) -> torch.Tensor:
    """Same contract as gumbel_argmax_reference: logits [B, V] -> token ids [B] int64."""
    logits = logits.contiguous()
    b, v = logits.shape
    out = torch.empty(b, dtype=torch.int64, device=logits.device)
    _gumbel_argmax_kernel[(b,)](logits, logits.stride(0), inv_temp.contiguous(),
                                thresholds.contiguous().float(), keys.contiguous(), out, v, BLOCK=1024)
    return out
