"""How many KV blocks fit, and the cache tensors themselves.

CPU: a byte budget (`kv_cache_bytes`, default 64 MiB). CUDA: what is left of
`gpu_memory_utilization` x device memory after a warmup forward at the largest step the
scheduler can issue (max_num_batched_tokens tokens, max_num_seqs rows of logits and the
sampler's sort), so activations never fight the cache for memory.
"""
from __future__ import annotations

import torch

from engine.attention import AttentionMetadata
from engine.config import ModelConfig

DEFAULT_CPU_KV_BYTES = 64 * 2**20


def kv_block_bytes(cfg: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
    """Bytes of one block across all layers, K and V."""
    elem = torch.empty(0, dtype=dtype).element_size()
    return 2 * cfg.num_hidden_layers * block_size * cfg.num_key_value_heads * cfg.head_dim * elem


def allocate_kv_cache(cfg: ModelConfig, num_blocks: int, block_size: int, dtype: torch.dtype,
                      device: torch.device) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """One tensor [2, layers, num_blocks, block_size, Hk, D] and its per-layer (k, v) views."""
    cache = torch.zeros(2, cfg.num_hidden_layers, num_blocks, block_size, cfg.num_key_value_heads,
                        cfg.head_dim, dtype=dtype, device=device)
    return cache, [(cache[0, i], cache[1, i]) for i in range(cfg.num_hidden_layers)]


@torch.no_grad()
def warmup_forward(model, num_tokens: int, max_len: int, num_logit_rows: int) -> None:
    """The largest step the engine runs, without a cache: packed prompts of up to `max_len`
    tokens, then logits (fp32), log-softmax and a sort over `num_logit_rows` rows."""
    device = model.device
    lengths = [max_len] * (num_tokens // max_len) + ([num_tokens % max_len] if num_tokens % max_len else [])
    ids = torch.zeros(num_tokens, dtype=torch.long, device=device)
    positions = torch.cat([torch.arange(n, device=device) for n in lengths])
    hidden = model.forward_packed(ids, positions, AttentionMetadata.for_lengths(lengths, device))
    rows = hidden[-min(num_logit_rows, num_tokens):]
    logits = model.compute_logits(rows).float()
    logits.log_softmax(-1)
    logits.sort(dim=-1, descending=True)


def kv_budget_bytes(total: int, free: int, peak_allocated: int, current_allocated: int,
                    gpu_memory_utilization: float) -> float:
    """Bytes the KV cache may take: the utilization share of the device, less what is in use
    now (weights, other processes, the CUDA context: `total - free`, read after the warmup's
    activations went back to the device) and the warmup's activation peak above the current
    allocation (room the largest step needs at run time)."""
    return total * gpu_memory_utilization - (total - free) - (peak_allocated - current_allocated)


def cuda_num_blocks(model, block_bytes: int, gpu_memory_utilization: float, num_tokens: int,
                    max_len: int, num_logit_rows: int) -> int:
    """Blocks that fit in what the warmup leaves of the utilization budget."""
    device = model.device
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    warmup_forward(model, num_tokens, max_len, num_logit_rows)
    torch.cuda.synchronize(device)
    # hand the warmup's cached blocks back: otherwise `total - free` counts its activations,
    # which the peak term below counts again
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    stats = torch.cuda.memory_stats(device)
    budget = kv_budget_bytes(total, free, stats["allocated_bytes.all.peak"],
                             stats["allocated_bytes.all.current"], gpu_memory_utilization)
    return int(budget // block_bytes)
