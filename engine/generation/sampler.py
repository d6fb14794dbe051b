"""Batched, per-row seeded sampling: temperature, top-k, top-p, greedy; and log-probs.

Sampling is a Gumbel-max race: token = argmax over the kept tokens of logit/T + G, where
G = -log(-log u) and u comes from a counter-based hash of (row key, vocab id). The row key is
derived on the host from the sequence's seed and the index of the token being sampled, so a
row's draw depends on nothing else in the batch: the same seed gives the same tokens whatever
shares the step, and a preempted sequence resamples exactly what it sampled before.

Top-k / top-p become one threshold per row (the smallest kept scaled logit, found by a sort
of the rows that filter); every token at or above it competes in the race, which samples
exactly the renormalized filtered distribution. On CUDA the race is one Triton kernel
(sampling_kernel.py) that reads the logits once; elsewhere the torch reference below.
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_MIX_C1, _MIX_C2 = 0x21F0AAAD, 0x735A2D97     # Wellons' low-bias 32-bit integer hash


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


def filter_thresholds(scaled: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """scaled [R, V] fp32 logits / T; top_k [R] int64 (>= V or <= 0: off); top_p [R] fp32.
    Returns [R] fp32: the smallest scaled logit kept by top-k then top-p (at least one)."""
    sorted_x, _ = scaled.sort(dim=-1, descending=True)
    vocab = scaled.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    rank = torch.arange(vocab, device=scaled.device)
    probs = sorted_x.softmax(-1).masked_fill(rank[None, :] >= k[:, None], 0.0)
    probs = probs / probs.sum(-1, keepdim=True)
    mass_before = probs.cumsum(-1) - probs
    keep = (mass_before < top_p[:, None]) & (rank[None, :] < k[:, None])
    count = keep.sum(-1).clamp(min=1)
    return sorted_x.gather(1, (count - 1)[:, None]).squeeze(1)


def gumbel_argmax_reference(logits: torch.Tensor, inv_temp: torch.Tensor, thresholds: torch.Tensor,
                            keys: torch.Tensor) -> torch.Tensor:
    """logits [B, V] (any float dtype), inv_temp [B] fp32, thresholds [B] fp32 (-inf: keep
    all), keys [B, 2] int64 -> sampled token ids [B] int64."""
    x = logits.float() * inv_temp[:, None]
    cols = torch.arange(x.shape[-1], device=x.device, dtype=torch.int64)
    score = torch.where(x >= thresholds[:, None], x + gumbel_noise(keys, cols), float("-inf"))
    return score.argmax(-1)


def gumbel_argmax(logits, inv_temp, thresholds, keys, backend: str | None = None) -> torch.Tensor:
    """Dispatch: the Triton kernel on CUDA (or when backend='triton'), else the reference."""
    if backend is None:
        backend = "triton" if logits.is_cuda else "torch"
    if backend == "triton":
        from engine.generation.sampling_kernel import gumbel_argmax_triton
        return gumbel_argmax_triton(logits, inv_temp, thresholds, keys)
    return gumbel_argmax_reference(logits, inv_temp, thresholds, keys)


def sample(logits: torch.Tensor, temperatures: list[float], top_ks: list[int], top_ps: list[float],
           seeds: list[int], steps: list[int], backend: str | None = None) -> torch.Tensor:
    """logits [B, V] -> next token ids [B] int64, on logits' device.

    Per row: temperature 0 is greedy (argmax, first index on ties); otherwise a seeded draw
    from softmax(logits / T) restricted by top_k (<= 0 off) and top_p (1.0 off). `seeds` and
    `steps` (index of the token being sampled) key each row's noise.
    """
    device = logits.device
    greedy = [t == 0.0 for t in temperatures]
    if all(greedy):
        return logits.argmax(-1)
    inv_temp = torch.tensor([1.0 if g else 1.0 / t for g, t in zip(greedy, temperatures)],
                            dtype=torch.float32, device=device)
    thresholds = torch.full((len(temperatures),), float("-inf"), device=device)
    rows = [i for i, (g, k, p) in enumerate(zip(greedy, top_ks, top_ps))
            if not g and (k > 0 or p < 1.0)]
    if rows:
        idx = torch.tensor(rows, device=device)
        scaled = logits[idx].float() * inv_temp[idx, None]
        thresholds[idx] = filter_thresholds(
            scaled, torch.tensor([top_ks[i] for i in rows], device=device),
            torch.tensor([top_ps[i] for i in rows], dtype=torch.float32, device=device))
    keys = torch.tensor(row_keys(seeds, steps), dtype=torch.int64, device=device)
    tokens = gumbel_argmax(logits, inv_temp, thresholds, keys, backend)
    if any(greedy):
        tokens = torch.where(torch.tensor(greedy, device=device), logits.argmax(-1), tokens)
    return tokens


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [R, V], targets [R] int64 -> log p(target) [R] fp32."""
    return logits.float().log_softmax(-1).gather(1, targets[:, None]).squeeze(1)


def top_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [R, V] -> (log-probs [R, k] fp32 descending, token ids [R, k] int64)."""
    return logits.float().log_softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
