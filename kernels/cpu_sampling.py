"""The Gumbel-max sampling race for the CPU backend, bit for bit kernels.sampling's reference:
the noise is hashed only for the tokens that can still win.

Gumbel noise G = -log(-log u) with u in [2^-24, 1 - 2^-24] (kernels.sampling.gumbel_noise)
lies in [-2.82, 16.64]. A kept token whose scaled logit is more than that span below its row's
best kept logit scores below the best token's worst case, so it can never win. Hashing the
whole vocabulary is about twenty int64 passes over [B, V], more than the model's own decode
step at a few hundred rows; here only the candidates are hashed, and the race among them takes
the reference's float steps, so the same token wins (the first index on ties).
"""
from __future__ import annotations

import torch

from kernels.sampling import gumbel_argmax_reference, gumbel_noise

NOISE_SPAN = 20.0   # above the noise's full range (19.45), with room for float rounding


def gumbel_argmax(logits: torch.Tensor, inv_temp: torch.Tensor, thresholds: torch.Tensor,
                  keys: torch.Tensor) -> torch.Tensor:
    """Same contract as kernels.sampling.gumbel_argmax_reference: logits [B, V], inv_temp [B]
    fp32, thresholds [B] fp32 (-inf: keep all), keys [B, 2] int64 -> token ids [B] int64."""
    x = logits.float() * inv_temp[:, None]
    kept = x >= thresholds[:, None]
    best = torch.where(kept, x, float("-inf")).amax(-1)
    rows, cols = (kept & (x >= (best - NOISE_SPAN)[:, None])).nonzero(as_tuple=True)
    if 2 * rows.numel() > x.numel():      # a flat row set: hashing everything costs less
        return gumbel_argmax_reference(logits, inv_temp, thresholds, keys)
    score = torch.full_like(x, float("-inf"))
    score[rows, cols] = x[rows, cols] + gumbel_noise(keys[rows], cols[:, None]).squeeze(1)
    return score.argmax(-1)
