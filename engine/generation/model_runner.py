"""Runs one scheduled step on the model: flat batch tensors in, sampled tokens and log-probs out.

A step is one token stream (every sequence's new tokens back to back) with positions,
cu_seqlens, the cache slot of each new token and, when any sequence already has K/V in the
cache, block tables: varlen attention then reads keys from the paged cache. A step in which
every sequence computes a single token is a decode step: paged decode attention, replayed
from a CUDA graph on GPU. Logits are computed only for the rows that sample or whose
log-probs were asked for.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from engine import ops
from engine.attention import AttentionMetadata
from engine.generation import sampler
from engine.generation.cuda_graphs import DecodeGraphs
from engine.generation.kv_cache import allocate_kv_cache
from engine.generation.scheduler import ScheduledBatch
from kernels.cpu_attention import DenseDecodeKV


@dataclass
class StepOutput:
    sampled_rows: list[int] = field(default_factory=list)              # batch indices that sampled
    sampled: list[int] = field(default_factory=list)                   # their tokens
    prompt_logprobs: dict[int, list[float]] = field(default_factory=dict)
    top_logprobs: dict[int, dict[int, float]] = field(default_factory=dict)


@dataclass
class _Rows:
    """Which hidden rows need logits, and what for."""
    sample: list[tuple[int, int]] = field(default_factory=list)        # (batch index, row)
    logprob: list[tuple[int, int, int]] = field(default_factory=list)  # (batch index, row, target)
    top: list[tuple[int, int]] = field(default_factory=list)           # (batch index, row)


class GraphCaptureError(RuntimeError):
    """CUDA-graph capture failed; the engine does not silently fall back to eager decoding."""


class _HostBuffers:
    """A step's integer inputs, written on the host and sent with non_blocking copies: pinned
    host tensors (numpy views for cheap writes) mirrored by device tensors of the same shape.
    On a CPU device the host tensors are the step's tensors (no copy)."""

    def __init__(self, device: torch.device, max_tokens: int, max_seqs: int, max_blocks: int):
        self.device = device
        pin = device.type == "cuda"
        host = lambda *shape, dtype: torch.zeros(*shape, dtype=dtype, pin_memory=pin)  # noqa: E731
        self.host = {"ids": host(max_tokens, dtype=torch.int64),
                     "positions": host(max_tokens, dtype=torch.int64),
                     "slots": host(max_tokens, dtype=torch.int64),
                     "cu_q": host(max_seqs + 1, dtype=torch.int32),
                     "cu_k": host(max_seqs + 1, dtype=torch.int32),
                     "context": host(max_seqs, dtype=torch.int32),
                     "steps": host(max_seqs, dtype=torch.int64),
                     "tables": host(max_seqs, max_blocks, dtype=torch.int32)}
        self.np = {k: v.numpy() for k, v in self.host.items()}
        self.dev = (self.host if device.type == "cpu" else
                    {k: torch.zeros_like(v, device=device) for k, v in self.host.items()})
        self._sent = torch.cuda.Event() if device.type == "cuda" else None

    def writable(self) -> None:
        """Wait until the last step's copies have read the host buffers (usually long done:
        each sampling step ends with the device->host copy of its tokens)."""
        if self._sent is not None:
            self._sent.synchronize()

    def sent(self) -> None:
        """Mark the end of a step's copies."""
        if self._sent is not None:
            self._sent.record()

    def send(self, name: str, rows: int, cols: int | None = None) -> torch.Tensor:
        """The device tensor of the first `rows` (and `cols`) entries of buffer `name`."""
        src = self.host[name][:rows] if cols is None else self.host[name][:rows, :cols]
        if self.device.type == "cpu":
            return src
        dst = self.dev[name][:rows] if cols is None else self.dev[name][:rows, :cols]
        dst.copy_(src, non_blocking=True)
        return dst


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int, max_model_len: int,
                 max_num_seqs: int, use_cuda_graphs: bool, max_num_batched_tokens: int = 8192):
        self.model = model
        self.device = model.device
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.max_blocks_per_seq = -(-max_model_len // block_size)
        # rows of logits computed at once for log-probs: about 64 MiB of fp32 logits
        self.logits_chunk = max(1, max_num_seqs, 2**24 // model.config.vocab_size)
        self.kv_cache, self.kv_caches = allocate_kv_cache(model.config, num_blocks, block_size,
                                                          model.dtype, self.device)
        self.buffers = _HostBuffers(self.device, max(max_num_batched_tokens, max_num_seqs),
                                    max_num_seqs, self.max_blocks_per_seq)
        # block-table rows of the current decode composition: which sequence owns each row
        # and how many of its blocks the row holds, so a decode step writes only new blocks
        self._table_owner: list[int] = []
        self._table_filled: list[int] = []
        self._sampling_key: tuple[int, ...] | None = None
        self._sampling: sampler.SamplingBatch | None = None
        self._decode_cu_seqlens = torch.arange(max_num_seqs + 1, dtype=torch.int32, device=self.device)
        # the CPU backend's decode path: K/V kept dense across decode steps (no page gathers)
        on_cpu_backend = self.device.type == "cpu" and ops.backend(torch.empty(0)) == "cpu"
        self.dense_kv = DenseDecodeKV() if on_cpu_backend else None
        self.graphs: DecodeGraphs | None = None
        # the torch reference ops sync with the host (.tolist()), which a graph cannot capture
        if use_cuda_graphs and self.device.type == "cuda" and ops.backend() == "triton":
            self._capture_graphs(max_num_seqs)

    def _capture_graphs(self, max_num_seqs: int) -> None:
        graphs = DecodeGraphs(self.model, self.kv_caches, max_num_seqs, self.max_blocks_per_seq)
        try:
            graphs.capture()
        except Exception as e:   # a kernel that syncs or allocates cannot be captured
            raise GraphCaptureError(
                f"CUDA graph capture failed at decode batch size {graphs.capturing}: "
                f"{type(e).__name__}: {e}; pass enforce_eager=True to decode without graphs") from e
        self.graphs = graphs

    def close(self) -> None:
        self.graphs = None
        self.kv_cache = self.kv_caches = None

    # --- batch preparation ----------------------------------------------------------------
    def prepare(self, batch: ScheduledBatch) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, _Rows]:
        """Flat step tensors: input ids [N], positions [N], attention metadata, logit rows."""
        self.buffers.writable()
        step = self._prepare_decode(batch) if batch.is_decode else self._prepare_prefill(batch)
        self.buffers.sent()
        return step

    def _prepare_prefill(self, batch: ScheduledBatch):
        if self.dense_kv is not None:
            self.dense_kv.reset()
        self._table_owner = []                      # the next decode step rebuilds its rows
        buf, bs = self.buffers.np, self.block_size
        n, cu_q, cu_k = 0, [0], [0]
        for seq, k in zip(batch.seqs, batch.num_new_tokens):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + k
            buf["ids"][n:n + k] = seq.token_ids[start:end]
            pos = np.arange(start, end)
            buf["positions"][n:n + k] = pos
            buf["slots"][n:n + k] = seq.block_table_array()[pos // bs].astype(np.int64) * bs + pos % bs
            n += k
            cu_q.append(n)
            cu_k.append(cu_k[-1] + end)
        num_seqs = len(batch.seqs)
        buf["cu_q"][:num_seqs + 1] = cu_q
        send = self.buffers.send
        meta = AttentionMetadata(cu_seqlens_q=send("cu_q", num_seqs + 1),
                                 max_seqlen_q=max(batch.num_new_tokens),
                                 kv_caches=self.kv_caches, slot_mapping=send("slots", n))
        if any(s.num_computed_tokens for s in batch.seqs):   # some keys come from the cache
            buf["cu_k"][:num_seqs + 1] = cu_k
            meta.cu_seqlens_k = send("cu_k", num_seqs + 1)
            meta.max_seqlen_k = max(b - a for a, b in zip(cu_k, cu_k[1:]))
            width = max(len(s.block_table) for s in batch.seqs)
            tables = buf["tables"]
            tables[:num_seqs, :width] = 0               # pad with block 0
            for i, seq in enumerate(batch.seqs):
                row = seq.block_table_array()
                tables[i, :len(row)] = row
            meta.block_tables = send("tables", num_seqs, width)
        else:
            meta.max_seqlen_k = meta.max_seqlen_q
        return send("ids", n), send("positions", n), meta, self._logit_rows(batch, cu_q)

    def _update_tables(self, seqs: list) -> int:
        """Bring the block-table rows up to date for this decode composition; only rows whose
        sequence changed or grew new blocks are written. -> the table width in use."""
        tables = self.buffers.np["tables"]
        owner, filled = self._table_owner, self._table_filled
        if len(owner) != len(seqs) or any(o != s.seq_id for o, s in zip(owner, seqs)):
            self._table_owner = owner = [s.seq_id for s in seqs]
            self._table_filled = filled = [0] * len(seqs)
        for i, seq in enumerate(seqs):
            if len(seq.block_table) != filled[i]:
                row = seq.block_table_array()
                tables[i, filled[i]:len(row)] = row[filled[i]:]
                filled[i] = len(row)
        return max(filled)

    def _prepare_decode(self, batch: ScheduledBatch):
        seqs, bs, b = batch.seqs, self.block_size, len(batch.seqs)
        buf, send = self.buffers.np, self.buffers.send
        width = self._update_tables(seqs)
        pos = buf["positions"][:b]
        pos[:] = [s.num_computed_tokens for s in seqs]
        buf["ids"][:b] = [s.token_ids[-1] for s in seqs]
        buf["slots"][:b] = buf["tables"][np.arange(b), pos // bs] * bs + pos % bs
        buf["context"][:b] = pos + 1
        meta = AttentionMetadata(cu_seqlens_q=self._decode_cu_seqlens[:b + 1], max_seqlen_q=1,
                                 max_seqlen_k=int(pos.max()) + 1, kv_caches=self.kv_caches,
                                 slot_mapping=send("slots", b), block_tables=send("tables", b, width),
                                 context_lens=send("context", b), is_decode=True)
        positions = send("positions", b)
        if self.dense_kv is not None and self.dense_kv.prepare(
                self.kv_caches, self._table_owner, meta.block_tables, positions):
            meta.dense_kv = self.dense_kv
        if all(s.samples and not s.top_logprobs for s in seqs):
            rows = _Rows(sample=[(i, i) for i in range(b)])
        else:
            rows = self._logit_rows(batch, range(b + 1))
        return send("ids", b), positions, meta, rows

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
        """Sample the picked rows: settings on the device per composition, one device->host
        copy for the tokens."""
        b = len(picks)
        seqs = [batch.seqs[i] for i, _ in picks]
        if all(i == r for i, r in picks) and hidden.shape[0] == b:
            rows = hidden                                   # a decode step: every row samples
        else:
            rows = hidden[torch.tensor([r for _, r in picks], device=self.device)]
        logits = self.model.compute_logits(rows)
        key = tuple(s.seq_id for s in seqs)
        if key != self._sampling_key:
            self._sampling_key = key
            self._sampling = sampler.SamplingBatch(
                [s.params.temperature for s in seqs], [s.params.top_k for s in seqs],
                [s.params.top_p for s in seqs], [s.seed for s in seqs], self.device)
        steps = None
        if not self._sampling.all_greedy:
            self.buffers.np["steps"][:b] = [s.num_completion_tokens for s in seqs]
            steps = self.buffers.send("steps", b)
            self.buffers.sent()
        out.sampled_rows = [i for i, _ in picks]
        out.sampled = self._sampling.sample(logits, steps).tolist()

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
