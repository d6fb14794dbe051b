"""Block manager: refcounts, the free list, prefix-cache hits, LRU eviction, pending prefixes."""
import pytest

from engine.generation import SamplingParams
from engine.generation.block_manager import BlockManager
from engine.generation.sequence import Sequence

BS = 4


def _seq(tokens) -> Sequence:
    return Sequence(list(tokens), SamplingParams(), request_index=0)


def _compute(bm: BlockManager, seq: Sequence, upto: int | None = None) -> None:
    """Pretend the model computed the sequence's tokens up to `upto` (default: all)."""
    upto = seq.num_tokens if upto is None else upto
    bm.reserve(seq, upto)
    seq.num_computed_tokens = upto
    bm.commit(seq)


def _admit(bm: BlockManager, seq: Sequence, max_cached: int | None = None):
    hits, waits = bm.match_prefix(seq, seq.num_tokens - 1 if max_cached is None else max_cached)
    if not waits:
        bm.admit(seq, hits)
    return hits, waits


def test_allocation_and_free_return_every_block():
    bm = BlockManager(8, BS)
    a = _seq(range(10))
    _admit(bm, a)
    _compute(bm, a)
    assert len(a.block_table) == 3 and bm.num_free_blocks == 5
    assert all(bm.blocks[b].ref_count == 1 for b in a.block_table)
    bm.free(a)
    assert bm.num_free_blocks == 8 and a.block_table == []
    assert all(b.ref_count == 0 for b in bm.blocks)


def test_shared_prefix_is_hit_and_refcounted():
    bm = BlockManager(16, BS)
    a = _seq([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    _admit(bm, a)
    _compute(bm, a)
    b = _seq([1, 2, 3, 4, 5, 6, 7, 8, 42, 43, 44])
    hits, waits = _admit(bm, b)
    assert not waits and hits == a.block_table[:2]
    assert b.num_computed_tokens == 8 and b.num_cached_tokens == 8
    assert [bm.blocks[x].ref_count for x in hits] == [2, 2]
    # a diverging first block hits nothing
    c = _seq([1, 2, 3, 99, 5, 6, 7, 8, 9])
    assert _admit(bm, c)[0] == []


def test_the_block_holding_the_last_token_is_never_hit():
    bm = BlockManager(16, BS)
    a = _seq(range(8))
    _admit(bm, a)
    _compute(bm, a)
    same = _seq(range(8))            # identical 8-token prompt: only block 0 may be reused
    hits, _ = _admit(bm, same)
    assert hits == a.block_table[:1] and same.num_uncomputed_tokens == 4


def test_freed_cached_blocks_stay_hittable_until_evicted_lru():
    bm = BlockManager(4, BS)
    a = _seq(range(9))                                  # 2 full blocks + 1
    _admit(bm, a)
    _compute(bm, a)
    prefix_blocks = a.block_table[:2]
    bm.free(a)
    assert bm.num_free_blocks == 4 and len(bm.cached) == 2
    # the uncached tail block is reused first; the cached ones survive one small allocation
    x = _seq([50, 51, 52])
    _admit(bm, x)
    _compute(bm, x)
    assert x.block_table[0] not in prefix_blocks
    b = _seq(list(range(8)) + [70])
    hits, _ = _admit(bm, b)
    assert hits == prefix_blocks
    bm.free(b)
    bm.free(x)
    # filling the whole cache evicts them: the hash map forgets the reused blocks
    y = _seq(range(100, 116))
    _admit(bm, y)
    _compute(bm, y)
    assert _admit(bm, _seq(list(range(8)) + [70]))[0] == []


def test_a_prefix_being_computed_makes_followers_wait():
    bm = BlockManager(16, BS)
    leader = _seq(range(12))
    _admit(bm, leader)
    bm.reserve(leader, 12)                              # scheduled, not yet computed
    follower = _seq(list(range(8)) + [90, 91])
    hits, waits = bm.match_prefix(follower, follower.num_tokens - 1)
    assert waits and hits == []
    _compute(bm, leader)                                # the step ran
    hits, waits = bm.match_prefix(follower, follower.num_tokens - 1)
    assert not waits and hits == leader.block_table[:2]
    # a preempted leader stops announcing its blocks
    other = _seq(range(200, 212))
    _admit(bm, other)
    bm.reserve(other, 12)
    bm.free(other)
    assert not bm.match_prefix(_seq(range(200, 210)), 9)[1]
    assert not bm.pending


def test_hash_collision_is_not_a_hit():
    bm = BlockManager(8, BS)
    a = _seq(range(9))
    _admit(bm, a)
    _compute(bm, a)
    bm.blocks[a.block_table[0]].token_ids = (9, 9, 9, 9)   # as if another prefix had this hash
    assert _admit(bm, _seq(range(9)))[0] == []


def test_without_prefix_caching_nothing_is_hashed():
    bm = BlockManager(8, BS, enable_prefix_caching=False)
    a = _seq(range(9))
    _admit(bm, a)
    _compute(bm, a)
    assert bm.cached == {} and _admit(bm, _seq(range(9)))[0] == []


def test_reset_prefix_cache():
    bm = BlockManager(8, BS)
    a = _seq(range(9))
    _admit(bm, a)
    _compute(bm, a)
    with pytest.raises(RuntimeError, match="hold blocks"):
        bm.reset_prefix_cache()
    bm.free(a)
    bm.reset_prefix_cache()
    assert bm.cached == {} and _admit(bm, _seq(range(9)))[0] == []
