"""Batched, per-row seeded sampling: temperature, top-k, top-p, greedy; and log-probs.

Sampling is a Gumbel-max race: token = argmax over the kept tokens of logit/T + G, where
G = -log(-log u) and u comes from a counter-based hash of (row key, vocab id). The row key is
derived from the sequence's seed and the index of the token being sampled, so a
row's draw depends on nothing else in the batch: the same seed gives the same tokens whatever
shares the step, and a preempted sequence resamples exactly what it sampled before.

Top-k / top-p become one threshold per row (the smallest kept scaled logit, found by a sort
of the rows that filter); every token at or above it competes in the race, which samples
exactly the renormalized filtered distribution. The race itself is an op behind engine.ops
(kernels/sampling.py): one Triton kernel that reads the logits once on CUDA, the torch
reference elsewhere. `SamplingBatch` keeps a batch's settings on the device between steps.
"""
from __future__ import annotations

import numpy as np
import torch

from engine import ops

_MASK64 = 0xFFFFFFFFFFFFFFFF
_MASK32 = 0xFFFFFFFF


def row_keys(seeds: list[int], steps: list[int]) -> list[tuple[int, int]]:
    """(seed, step) -> two 32-bit keys (splitmix64 of a combination of both)."""
    keys = []
    for seed, step in zip(seeds, steps):
        z = (seed * 0x9E3779B97F4A7C15 + (step + 1) * 0xD1B54A32D192ED03) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
        keys.append((z & _MASK32, z >> 32))
    return keys


def filter_thresholds(scaled: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """scaled [R, V] fp32 logits / T; top_k [R] int64 (>= V or <= 0: off); top_p [R] fp32.
    Returns [R] fp32: the smallest scaled logit kept by top-k then top-p (at least one)."""
    sorted_x = sorted_descending(scaled)
    vocab = scaled.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    rank = torch.arange(vocab, device=scaled.device)
    probs = sorted_x.softmax(-1).masked_fill(rank[None, :] >= k[:, None], 0.0)
    probs = probs / probs.sum(-1, keepdim=True)
    mass_before = probs.cumsum(-1) - probs
    keep = (mass_before < top_p[:, None]) & (rank[None, :] < k[:, None])
    count = keep.sum(-1).clamp(min=1)
    return sorted_x.gather(1, (count - 1)[:, None]).squeeze(1)


def sorted_descending(x: torch.Tensor) -> torch.Tensor:
    """x [R, V] -> each row's values, largest first. On the CPU numpy's vectorized sort takes a
    seventh of torch.sort's time (which also computes the indices) on sampling-sized rows;
    the values are the same whichever sort orders them."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(np.sort(x.numpy(), axis=-1)[:, ::-1]))
    return x.sort(dim=-1, descending=True).values


def row_keys_tensor(seeds: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """row_keys on the device: seeds, steps [B] int64 -> keys [B, 2] int64 (32-bit values).
    int64 arithmetic wraps mod 2^64 like the host's masked ints; shifts are made logical."""
    def signed(c: int) -> int:
        return c - (1 << 64) if c >= 1 << 63 else c

    def shr(z: torch.Tensor, n: int) -> torch.Tensor:
        return (z >> n) & ((1 << (64 - n)) - 1)

    z = seeds * signed(0x9E3779B97F4A7C15) + (steps + 1) * signed(0xD1B54A32D192ED03)
    z = (z ^ shr(z, 30)) * signed(0xBF58476D1CE4E5B9)
    z = (z ^ shr(z, 27)) * signed(0x94D049BB133111EB)
    z = z ^ shr(z, 31)
    return torch.stack((z & _MASK32, shr(z, 32)), dim=1)


class SamplingBatch:
    """One batch composition's sampling settings as device tensors, built once when the set
    of sampling sequences changes; each step then only passes its logits and steps.

    temperatures / top_ks / top_ps / seeds: one entry per row (temperature 0: greedy).
    """

    def __init__(self, temperatures: list[float], top_ks: list[int], top_ps: list[float],
                 seeds: list[int], device: torch.device | str):
        greedy = [t == 0.0 for t in temperatures]
        self.all_greedy = all(greedy)
        if self.all_greedy:
            return
        self.device = device
        self.greedy = torch.tensor(greedy, device=device) if any(greedy) else None
        self.inv_temp = torch.tensor([1.0 if g else 1.0 / t for g, t in zip(greedy, temperatures)],
                                     dtype=torch.float32, device=device)
        rows = [i for i, (g, k, p) in enumerate(zip(greedy, top_ks, top_ps))
                if not g and (k > 0 or p < 1.0)]
        self.filter_rows = torch.tensor(rows, device=device) if rows else None
        if rows:
            self.top_k = torch.tensor([top_ks[i] for i in rows], device=device)
            self.top_p = torch.tensor([top_ps[i] for i in rows], dtype=torch.float32, device=device)
        self.seeds = torch.tensor(seeds, dtype=torch.int64, device=device)

    def sample(self, logits: torch.Tensor, steps: torch.Tensor | None) -> torch.Tensor:
        """logits [B, V] -> next token ids [B] int64 on logits' device; steps [B] int64 on
        the device: index of the token each row samples (unused when all rows are greedy)."""
        if self.all_greedy:
            return logits.argmax(-1)
        thresholds = torch.full((logits.shape[0],), float("-inf"), device=logits.device)
        if self.filter_rows is not None:
            idx = self.filter_rows
            scaled = logits[idx].float() * self.inv_temp[idx, None]
            thresholds[idx] = filter_thresholds(scaled, self.top_k, self.top_p)
        keys = row_keys_tensor(self.seeds, steps)
        tokens = ops.gumbel_argmax(logits, self.inv_temp, thresholds, keys)
        if self.greedy is not None:
            tokens = torch.where(self.greedy, logits.argmax(-1), tokens)
        return tokens


def sample(logits: torch.Tensor, temperatures: list[float], top_ks: list[int], top_ps: list[float],
           seeds: list[int], steps: list[int]) -> torch.Tensor:
    """logits [B, V] -> next token ids [B] int64, on logits' device.

    Per row: temperature 0 is greedy (argmax, first index on ties); otherwise a seeded draw
    from softmax(logits / T) restricted by top_k (<= 0 off) and top_p (1.0 off). `seeds` and
    `steps` (index of the token being sampled) key each row's noise. The race runs on the
    backend `engine.ops` picks (Triton on CUDA).
    """
    batch = SamplingBatch(temperatures, top_ks, top_ps, seeds, logits.device)
    return batch.sample(logits, torch.tensor(steps, dtype=torch.int64, device=logits.device))


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [R, V], targets [R] int64 -> log p(target) [R] fp32."""
    return logits.float().log_softmax(-1).gather(1, targets[:, None]).squeeze(1)


def top_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [R, V] -> (log-probs [R, k] fp32 descending, token ids [R, k] int64)."""
    return logits.float().log_softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
