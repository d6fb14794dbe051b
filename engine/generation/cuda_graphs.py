"""CUDA graphs for decode steps: one graph per padded batch size, replayed with static buffers.

A decode step for a small model is dominated by kernel-launch latency; replaying a captured
graph removes it. Batches are padded up to the next captured size; padding rows write no
K/V (slot -1) and attend to one key of block 0, and their outputs are ignored.
"""
from __future__ import annotations

import torch

from engine.attention import AttentionMetadata


def graph_batch_sizes(max_bs: int) -> list[int]:
    sizes = [b for b in (1, 2, 4, 8) if b < max_bs] + list(range(16, max_bs, 16))
    return sorted(set(sizes + [max_bs]))


class DecodeGraphs:
    def __init__(self, model, kv_caches, max_bs: int, max_blocks_per_seq: int):
        device = model.device
        self.model = model
        self.max_bs = max_bs
        self.input_ids = torch.zeros(max_bs, dtype=torch.long, device=device)
        self.positions = torch.zeros(max_bs, dtype=torch.long, device=device)
        self.slot_mapping = torch.full((max_bs,), -1, dtype=torch.long, device=device)
        self.context_lens = torch.ones(max_bs, dtype=torch.int32, device=device)
        self.block_tables = torch.zeros(max_bs, max_blocks_per_seq, dtype=torch.int32, device=device)
        self.cu_seqlens = torch.arange(max_bs + 1, dtype=torch.int32, device=device)
        self.hidden = torch.zeros(max_bs, model.config.hidden_size, dtype=model.dtype, device=device)
        self.kv_caches = kv_caches
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.sizes = graph_batch_sizes(max_bs)
        self.capturing: int | None = None        # the batch size being captured (for errors)

    def _meta(self, bs: int) -> AttentionMetadata:
        return AttentionMetadata(cu_seqlens_q=self.cu_seqlens[:bs + 1], max_seqlen_q=1,
                                 kv_caches=self.kv_caches, slot_mapping=self.slot_mapping[:bs],
                                 block_tables=self.block_tables[:bs],
                                 context_lens=self.context_lens[:bs], is_decode=True)

    @torch.no_grad()
    def capture(self) -> None:
        """Capture largest first so smaller graphs reuse the same memory pool."""
        if self.model.rope_cos_sin.numel() == 0:
            self.model.init_rope()
        for bs in reversed(self.sizes):
            self.capturing = bs
            meta = self._meta(bs)
            # eager run first: Triton compiles and autotunes outside the capture
            self.hidden[:bs] = self.model.forward_packed(self.input_ids[:bs], self.positions[:bs], meta)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self.hidden[:bs] = self.model.forward_packed(self.input_ids[:bs], self.positions[:bs], meta)
            if self.pool is None:
                self.pool = graph.pool()
            self.graphs[bs] = graph
        self.capturing = None
        torch.cuda.synchronize()

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, slot_mapping: torch.Tensor,
            context_lens: torch.Tensor, block_tables: torch.Tensor) -> torch.Tensor:
        """Decode n <= max_bs tokens (device tensors) -> hidden [n, hidden]."""
        n, width = block_tables.shape
        bs = next(b for b in self.sizes if b >= n)
        self.input_ids[:n] = input_ids
        self.positions[:n] = positions
        self.slot_mapping[:n] = slot_mapping
        self.slot_mapping[n:bs] = -1
        self.context_lens[:n] = context_lens
        self.context_lens[n:bs] = 1
        self.block_tables[:n, :width] = block_tables
        self.block_tables[n:bs] = 0
        self.graphs[bs].replay()
        return self.hidden[:n]
