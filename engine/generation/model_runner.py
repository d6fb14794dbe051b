"""Runs one scheduled step on the model: flat batch tensors in, sampled tokens and log-probs out.

A step is one token stream (every sequence's new tokens back to back) with positions,
cu_seqlens, the cache slot of each new token and, when any sequence already has K/V in the
cache, block tables: varlen attention then reads keys from the paged cache. A step in which
every sequence computes a single token is a decode step: paged decode attention, replayed
from a CUDA graph on GPU. Logits are computed only for the rows that sample or whose
log-probs were asked for.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from engine import ops
from engine.attention import AttentionMetadata
from engine.generation import sampler
from engine.generation.cuda_graphs import DecodeGraphs
from engine.generation.kv_cache import allocate_kv_cache
from engine.generation.scheduler import ScheduledBatch


@dataclass
class StepOutput:
    sampled: dict[int, int] = field(default_factory=dict)              # batch index -> token
    prompt_logprobs: dict[int, list[float]] = field(default_factory=dict)
    top_logprobs: dict[int, dict[int, float]] = field(default_factory=dict)


@dataclass
class _Rows:
    """Which hidden rows need logits, and what for."""
    sample: list[tuple[int, int]] = field(default_factory=list)        # (batch index, row)
    logprob: list[tuple[int, int, int]] = field(default_factory=list)  # (batch index, row, target)
    top: list[tuple[int, int]] = field(default_factory=list)           # (batch index, row)


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int, max_model_len: int,
                 max_num_seqs: int, use_cuda_graphs: bool):
        self.model = model
        self.device = model.device
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.max_blocks_per_seq = -(-max_model_len // block_size)
        self.logits_chunk = max(1, max_num_seqs)
        self.kv_cache, self.kv_caches = allocate_kv_cache(model.config, num_blocks, block_size,
                                                          model.dtype, self.device)
        self.graphs: DecodeGraphs | None = None
        # the torch reference ops sync with the host (.tolist()), which a graph cannot capture
        if use_cuda_graphs and self.device.type == "cuda" and ops.backend() == "triton":
            self._capture_graphs(max_num_seqs)

    def _capture_graphs(self, max_num_seqs: int) -> None:
        try:
            graphs = DecodeGraphs(self.model, self.kv_caches, max_num_seqs, self.max_blocks_per_seq)
            graphs.capture()
            self.graphs = graphs
        except Exception as e:   # a kernel that syncs or allocates cannot be captured: run eager
            warnings.warn(f"CUDA graph capture failed, decoding eagerly: {type(e).__name__}: {e}")
            self.graphs = None
            torch.cuda.synchronize()

    def close(self) -> None:
        self.graphs = None
        self.kv_cache = self.kv_caches = None

    # --- batch preparation ----------------------------------------------------------------
    def _slots(self, block_table: list[int], start: int, end: int) -> list[int]:
        bs, out = self.block_size, []
        for b in range(start // bs, -(-end // bs)):
            lo, hi = max(start, b * bs), min(end, (b + 1) * bs)
            base = block_table[b] * bs - b * bs
            out.extend(range(base + lo, base + hi))
        return out

    def _block_tables(self, batch: ScheduledBatch) -> torch.Tensor:
        width = max(len(s.block_table) for s in batch.seqs)
        table = np.zeros((len(batch.seqs), width), dtype=np.int32)   # pad with block 0
        for i, seq in enumerate(batch.seqs):
            row = seq.block_table_array()
            table[i, :len(row)] = row
        return torch.from_numpy(table).to(self.device)

    def prepare(self, batch: ScheduledBatch) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, _Rows]:
        """Flat step tensors: input ids [N], positions [N], attention metadata, logit rows."""
        if batch.is_decode:
            return self._prepare_decode(batch)
        ids, positions, slots, cu_q, cu_k = [], [], [], [0], [0]
        for seq, k in zip(batch.seqs, batch.num_new_tokens):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + k
            ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            slots.extend(self._slots(seq.block_table, start, end))
            cu_q.append(cu_q[-1] + k)
            cu_k.append(cu_k[-1] + end)
        meta = AttentionMetadata(cu_seqlens_q=self._int32(cu_q), max_seqlen_q=max(batch.num_new_tokens),
                                 kv_caches=self.kv_caches, slot_mapping=self._int64(slots))
        if any(s.num_computed_tokens for s in batch.seqs):   # some keys come from the cache
            meta.cu_seqlens_k = self._int32(cu_k)
            meta.max_seqlen_k = max(b - a for a, b in zip(cu_k, cu_k[1:]))
            meta.block_tables = self._block_tables(batch)
        else:
            meta.max_seqlen_k = meta.max_seqlen_q
        return self._int64(ids), self._int64(positions), meta, self._logit_rows(batch, cu_q)

    def _prepare_decode(self, batch: ScheduledBatch):
        bs = self.block_size
        positions = [s.num_computed_tokens for s in batch.seqs]
        ids = [s.token_ids[p] for s, p in zip(batch.seqs, positions)]
        slots = [s.block_table[p // bs] * bs + p % bs for s, p in zip(batch.seqs, positions)]
        context = [p + 1 for p in positions]
        meta = AttentionMetadata(cu_seqlens_q=self._int32(list(range(len(ids) + 1))), max_seqlen_q=1,
                                 max_seqlen_k=max(context), kv_caches=self.kv_caches,
                                 slot_mapping=self._int64(slots), block_tables=self._block_tables(batch),
                                 context_lens=self._int32(context), is_decode=True)
        return self._int64(ids), self._int64(positions), meta, self._logit_rows(batch, range(len(ids) + 1))

    @staticmethod
    def _logit_rows(batch: ScheduledBatch, cu_q) -> _Rows:
        rows = _Rows()
        for i, (seq, k) in enumerate(zip(batch.seqs, batch.num_new_tokens)):
            start, end, last_row = seq.num_computed_tokens, seq.num_computed_tokens + k, cu_q[i + 1] - 1
            if end == seq.num_tokens:
                if seq.samples:
                    rows.sample.append((i, last_row))
                if seq.top_logprobs:
                    rows.top.append((i, last_row))
            if seq.logprob_start is not None:
                lo = max(start, seq.logprob_start + len(seq.prompt_logprobs))
                for p in range(lo, min(end, seq.num_tokens - 1)):
                    rows.logprob.append((i, cu_q[i] + p - start, seq.token_ids[p + 1]))
        return rows

    def _int64(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int64, device=self.device)

    def _int32(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int32, device=self.device)

    # --- the step -------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                meta: AttentionMetadata) -> torch.Tensor:
        """-> final hidden states [N, hidden] for the step's N tokens."""
        n = input_ids.shape[0]
        if meta.is_decode and self.graphs is not None and n <= self.graphs.max_bs:
            return self.graphs.run(input_ids, positions, meta.slot_mapping, meta.context_lens,
                                   meta.block_tables)
        return self.model.forward_packed(input_ids, positions, meta)

    @torch.no_grad()
    def execute(self, batch: ScheduledBatch) -> StepOutput:
        input_ids, positions, meta, rows = self.prepare(batch)
        hidden = self.forward(input_ids, positions, meta)
        out = StepOutput()
        if rows.sample:
            self._sample(batch, hidden, rows.sample, out)
        if rows.logprob:
            self._prompt_logprobs(hidden, rows.logprob, out)
        if rows.top:
            self._top_logprobs(batch, hidden, rows.top, out)
        return out

    def _sample(self, batch: ScheduledBatch, hidden: torch.Tensor, picks: list[tuple[int, int]],
                out: StepOutput) -> None:
        index = torch.tensor([r for _, r in picks], device=self.device)
        logits = self.model.compute_logits(hidden[index])
        seqs = [batch.seqs[i] for i, _ in picks]
        tokens = sampler.sample(logits,
                                [s.params.temperature for s in seqs],
                                [s.params.top_k for s in seqs],
                                [s.params.top_p for s in seqs],
                                [s.seed for s in seqs],
                                [s.num_completion_tokens for s in seqs])
        for (i, _), t in zip(picks, tokens.tolist()):
            out.sampled[i] = t

    def _top_logprobs(self, batch: ScheduledBatch, hidden: torch.Tensor, picks: list[tuple[int, int]],
                      out: StepOutput) -> None:
        k = max(batch.seqs[i].top_logprobs for i, _ in picks)
        for c in range(0, len(picks), self.logits_chunk):
            part = picks[c:c + self.logits_chunk]
            index = torch.tensor([r for _, r in part], device=self.device)
            values, ids = sampler.top_logprobs(self.model.compute_logits(hidden[index]), k)
            for (i, _), v, t in zip(part, values.tolist(), ids.tolist()):
                n = batch.seqs[i].top_logprobs
                out.top_logprobs[i] = dict(zip(t[:n], v[:n]))

    def _prompt_logprobs(self, hidden: torch.Tensor, picks: list[tuple[int, int, int]],
                         out: StepOutput) -> None:
        # in chunks: [rows, vocab] fp32 logits for a whole prefill would not fit
        for c in range(0, len(picks), self.logits_chunk):
            part = picks[c:c + self.logits_chunk]
            index = torch.tensor([r for _, r, _ in part], device=self.device)
            targets = torch.tensor([t for _, _, t in part], device=self.device)
            lp = sampler.token_logprobs(self.model.compute_logits(hidden[index]), targets).tolist()
            for (i, _, _), value in zip(part, lp):
                out.prompt_logprobs.setdefault(i, []).append(value)
