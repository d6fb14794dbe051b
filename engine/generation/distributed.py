"""Data-parallel generation: with LLM(data_parallel=True) under torchrun every rank holds the
whole model, takes a strided share of the requests, and every rank gets all results back in
input order (so every rank must make the same calls). The default, data_parallel=False, runs
each call on the calling process alone, so a rank-0-only call cannot hang.

Only an existing process group is used (the caller's torchrun / init_process_group); without
one everything runs on this process alone.
"""
from __future__ import annotations

import torch.distributed as dist

from engine.distributed import rank_and_world  # noqa: F401 (the one definition)


def shard(num_items: int, rank: int, world: int) -> list[int]:
    """Indices this rank handles: rank, rank + world, ... (balanced for sorted-by-length input)."""
    return list(range(rank, num_items, world))


def gather_in_order(indices: list[int], results: list, num_items: int, world: int) -> list:
    """Every rank's (index, result) pairs -> the full result list in input order, on every rank."""
    if world == 1:
        out = [None] * num_items
        for i, r in zip(indices, results):
            out[i] = r
        return out
    gathered: list = [None] * world
    dist.all_gather_object(gathered, (indices, results))
    out = [None] * num_items
    for idx, res in gathered:
        for i, r in zip(idx, res):
            out[i] = r
    return out
