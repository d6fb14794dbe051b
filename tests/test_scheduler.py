"""Scheduler without a model: token budget, chunked prefill beside decodes, preemption order."""
import pytest

from engine.generation import SamplingParams
from engine.generation.block_manager import BlockManager
from engine.generation.scheduler import Scheduler
from engine.generation.sequence import Sequence, SequenceStatus


def _seq(n: int, max_tokens: int = 4, first: int = 0) -> Sequence:
    return Sequence(list(range(first, first + n)), SamplingParams(max_tokens=max_tokens), request_index=0)


def _step(sched: Scheduler):
    """One step with a fake model: every sequence that reaches its end samples token 7."""
    batch = sched.schedule()
    sched.advance(batch)
    for seq in batch.seqs:
        if seq.num_computed_tokens == seq.num_tokens:
            seq.token_ids.append(7)
            if seq.num_completion_tokens >= seq.max_tokens:
                sched.finish(seq, "length")
    return batch


def test_long_prompt_is_chunked_beside_running_decodes():
    sched = Scheduler(BlockManager(64, 4), max_num_seqs=4, max_num_batched_tokens=8)
    short = _seq(3, max_tokens=10)
    sched.add(short)
    _step(sched)                              # short prefilled, now decoding
    long = _seq(30, first=100)
    sched.add(long)
    chunks = []
    while long.num_completion_tokens == 0:
        batch = _step(sched)
        assert batch.num_tokens <= 8
        assert batch.seqs[0] is short and batch.num_new_tokens[0] == 1   # the decode goes first
        chunks.append(batch.num_new_tokens[1])
    assert chunks == [7, 7, 7, 7, 2]
    assert not batch.is_decode and _step(sched).is_decode


def test_max_num_seqs_bounds_running():
    sched = Scheduler(BlockManager(64, 4), max_num_seqs=2, max_num_batched_tokens=64)
    seqs = [_seq(5, first=10 * i) for i in range(3)]
    for s in seqs:
        sched.add(s)
    batch = _step(sched)
    assert batch.seqs == seqs[:2] and len(sched.waiting) == 1


def test_out_of_blocks_preempts_the_newest_and_everything_finishes():
    # 6 blocks of 4: three 7-token prompts fit (2 blocks each) but cannot all grow
    sched = Scheduler(BlockManager(6, 4), max_num_seqs=4, max_num_batched_tokens=64)
    seqs = [_seq(7, max_tokens=6, first=10 * i) for i in range(3)]
    for s in seqs:
        sched.add(s)
    _step(sched)
    assert [s.status for s in seqs] == [SequenceStatus.RUNNING] * 3
    _step(sched)                              # position 7 still fits the 2nd block
    batch = _step(sched)                      # position 8 needs a 3rd: the newest gives way
    assert seqs[2].status == SequenceStatus.WAITING and sched.waiting[0] is seqs[2]
    assert seqs[2] not in batch.seqs and seqs[2].block_table == []
    assert sched.num_preemptions >= 1
    for _ in range(40):
        if not sched.has_unfinished():
            break
        _step(sched)
    assert all(s.is_finished and s.num_completion_tokens == 6 for s in seqs)
    assert sched.block_manager.num_free_blocks == 6


def test_budget_must_fit_every_decode():
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        Scheduler(BlockManager(8, 4), max_num_seqs=16, max_num_batched_tokens=8)
