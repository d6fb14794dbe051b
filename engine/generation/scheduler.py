"""Continuous batching: which sequences compute how many tokens in the next forward step.

Each step spends a token budget (max_num_batched_tokens) over at most max_num_seqs
sequences, in this order:
  1. every running sequence that is decoding (one token each), oldest first;
  2. running sequences part-way through their prompt (chunked prefill), oldest first;
  3. waiting sequences, first come first served, each with a prefill chunk that fits.
Decodes and prefill chunks share one forward step, so a long prompt never stalls the running
decodes: it is spread over several steps alongside them. When the KV cache runs out of
blocks, the newest running sequence not yet scheduled this step is preempted (its blocks
freed, recomputed later, usually hitting its own blocks in the prefix cache).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.generation.block_manager import BlockManager
from engine.generation.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledBatch:
    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)   # tokens each computes this step

    @property
    def is_decode(self) -> bool:
        """Every sequence computes exactly one token: the paged-decode (CUDA graph) path."""
        return all(n == 1 for n in self.num_new_tokens)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    def __len__(self) -> int:
        return len(self.seqs)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int):
        if max_num_batched_tokens < max_num_seqs:
            raise ValueError(f"max_num_batched_tokens ({max_num_batched_tokens}) must be at least "
                             f"max_num_seqs ({max_num_seqs}) so every running decode fits a step")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []        # admission order: the tail is the newest
        self.num_preemptions = 0
        self.num_cached_tokens = 0               # prompt tokens taken from the prefix cache

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        scheduled: set[int] = set()
        budget = self.max_num_batched_tokens
        preemptions_before = self.num_preemptions
        decoding = [s for s in self.running if s.num_uncomputed_tokens == 1]
        prefilling = [s for s in self.running if s.num_uncomputed_tokens > 1]
        for seq in decoding + prefilling:
            if seq.status != SequenceStatus.RUNNING:      # preempted to make room earlier
                continue
            if budget == 0 or len(batch) == self.max_num_seqs:
                break
            k = min(seq.num_uncomputed_tokens, budget)
            end = seq.num_computed_tokens + k
            if not self._make_room(seq, end, scheduled):
                if k == 1:             # a decode that cannot grow gives its blocks back
                    self._preempt(seq)
                continue               # a prefill keeps its blocks and waits for room
            self.block_manager.reserve(seq, end)
            self._add_to_batch(batch, scheduled, seq, k)
            budget -= k
        if self.num_preemptions == preemptions_before:     # no admissions while short of blocks
            self._admit_waiting(batch, scheduled, budget)
        return batch

    def _admit_waiting(self, batch: ScheduledBatch, scheduled: set[int], budget: int) -> None:
        bm = self.block_manager
        i = 0
        while i < len(self.waiting) and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[i]
            # never hit the block with the last token (its logits are needed), nor positions
            # whose log-probs a scoring request asks for
            max_cached = seq.num_tokens - 1
            if seq.logprob_start is not None:
                max_cached = min(max_cached, seq.logprob_start)
            hits, waits = bm.match_prefix(seq, max_cached)
            if waits:                  # another sequence is computing this prefix right now
                i += 1
                continue
            cached = len(hits) * bm.block_size
            k = min(seq.num_tokens - cached, budget)
            need = -(-(cached + k) // bm.block_size) - len(hits)
            hits_on_free_list = sum(1 for b in hits if bm.blocks[b].ref_count == 0)
            if need > bm.num_free_blocks - hits_on_free_list:
                break                  # first come first served: no overtaking for blocks
            del self.waiting[i]
            bm.admit(seq, hits)
            self.num_cached_tokens += min(cached, seq.num_prompt_tokens)
            bm.reserve(seq, cached + k)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            self._add_to_batch(batch, scheduled, seq, k)
            budget -= k

    def _make_room(self, seq: Sequence, num_tokens: int, scheduled: set[int]) -> bool:
        """Preempt the newest unscheduled running sequences until `seq` fits; False if it
        cannot fit even then."""
        bm = self.block_manager
        while not bm.can_reserve(seq, num_tokens):
            victim = next((s for s in reversed(self.running)
                           if s is not seq and s.seq_id not in scheduled), None)
            if victim is None:
                return False
            self._preempt(victim)
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        self.running.remove(seq)
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    @staticmethod
    def _add_to_batch(batch: ScheduledBatch, scheduled: set[int], seq: Sequence, k: int) -> None:
        batch.seqs.append(seq)
        batch.num_new_tokens.append(k)
        scheduled.add(seq.seq_id)

    def advance(self, batch: ScheduledBatch) -> None:
        """After the forward step: the scheduled tokens now have K/V in the cache."""
        for seq, k in zip(batch.seqs, batch.num_new_tokens):
            seq.num_computed_tokens += k
            self.block_manager.commit(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        seq.finish_reason = reason
        seq.status = SequenceStatus.FINISHED
        self.block_manager.free(seq)
        self.running.remove(seq)
