"""Paged KV blocks: reference counts, a free list, and prefix caching over full blocks.

A full block whose K/V has been computed is registered under its prefix hash (a chain over
the previous block's hash and its token ids). A later sequence with the same prefix takes
those blocks (refcount + 1) instead of recomputing them. A block whose refcount falls to 0
goes to the back of the free list but keeps its hash, so it can still be hit until it is
handed out again: the free list is oldest-freed-first, i.e. LRU eviction. Blocks without a
hash go to the front: they are reused first and cached ones live longer.

A prefix that is being computed right now is "pending": a sequence that would start by
computing the same block waits a step instead (see `match_prefix`), so thousands of requests
sharing one long meta-prompt compute it once even when they arrive together.
"""
from __future__ import annotations

from collections import Counter, OrderedDict

from engine.generation.sequence import Sequence


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_count = 0
        self.hash: int | None = None
        self.token_ids: tuple[int, ...] | None = None


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1:
            raise ValueError("the KV cache needs at least one block")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_blocks: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.cached: dict[int, int] = {}          # prefix hash -> block id (computed blocks)
        self.pending: Counter[int] = Counter()    # prefix hash -> sequences computing it now

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        """Blocks that can be handed out, including evictable cached ones."""
        return len(self.free_blocks)

    def blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        """New blocks `seq` needs so that its table covers `num_tokens` tokens."""
        return max(0, -(-num_tokens // self.block_size) - len(seq.block_table))

    # --- prefix caching -------------------------------------------------------------------
    def match_prefix(self, seq: Sequence, max_tokens: int) -> tuple[list[int], bool]:
        """Cached blocks that hold `seq`'s leading tokens, at most `max_tokens` tokens' worth,
        and whether the first block after them is being computed by another sequence now
        (then `seq` should wait a step and hit it instead of computing it twice)."""
        if not self.enable_prefix_caching:
            return [], False
        limit = max_tokens // self.block_size
        hashes = seq.prefix_hashes(self.block_size)[:limit]
        hits: list[int] = []
        for i, h in enumerate(hashes):
            bid = self.cached.get(h)
            if bid is None or self.blocks[bid].token_ids != seq.block_tokens(i, self.block_size):
                break
            hits.append(bid)
        waits = len(hits) < len(hashes) and self.pending[hashes[len(hits)]] > 0
        return hits, waits

    def admit(self, seq: Sequence, hits: list[int]) -> None:
        """Give a newly scheduled sequence its cached prefix blocks and announce the full
        blocks it is about to compute."""
        assert not seq.block_table
        for bid in hits:
            block = self.blocks[bid]
            if block.ref_count == 0:
                del self.free_blocks[bid]
            block.ref_count += 1
        seq.block_table = list(hits)
        seq.num_computed_tokens = seq.num_cached_tokens = len(hits) * self.block_size
        seq.num_committed_blocks = len(hits)
        if self.enable_prefix_caching:
            full = len(seq.prefix_hashes(self.block_size))
            seq.pending_blocks = range(len(hits), full)
            for i in seq.pending_blocks:
                self.pending[seq.block_hashes[i]] += 1

    def commit(self, seq: Sequence) -> None:
        """Register the full blocks whose K/V `seq` has now computed."""
        if not self.enable_prefix_caching:
            return
        done = seq.num_computed_tokens // self.block_size
        hashes = seq.prefix_hashes(self.block_size)
        for i in range(seq.num_committed_blocks, done):
            h = hashes[i]
            if i in seq.pending_blocks:
                self._unpend(h)
            block = self.blocks[seq.block_table[i]]
            if h not in self.cached and block.hash is None:
                block.hash, block.token_ids = h, seq.block_tokens(i, self.block_size)
                self.cached[h] = block.block_id
        seq.num_committed_blocks = max(seq.num_committed_blocks, done)

    def _unpend(self, h: int) -> None:
        self.pending[h] -= 1
        if self.pending[h] <= 0:
            del self.pending[h]

    # --- allocation -----------------------------------------------------------------------
    def can_reserve(self, seq: Sequence, num_tokens: int) -> bool:
        return self.blocks_needed(seq, num_tokens) <= len(self.free_blocks)

    def reserve(self, seq: Sequence, num_tokens: int) -> None:
        """Extend `seq`'s block table to cover `num_tokens` tokens (caller checked room)."""
        for _ in range(self.blocks_needed(seq, num_tokens)):
            seq.block_table.append(self._take_free_block())

    def _take_free_block(self) -> int:
        bid, _ = self.free_blocks.popitem(last=False)
        block = self.blocks[bid]
        if block.hash is not None:            # evict: it can no longer be hit
            if self.cached.get(block.hash) == bid:
                del self.cached[block.hash]
            block.hash = block.token_ids = None
        block.ref_count = 1
        return bid

    def free(self, seq: Sequence) -> None:
        """Drop `seq`'s references; tail blocks first, so shared prefixes outlive them in LRU."""
        for i in seq.pending_blocks:
            if i >= seq.num_committed_blocks:
                self._unpend(seq.block_hashes[i])
        seq.pending_blocks = range(0)
        for bid in reversed(seq.block_table):
            block = self.blocks[bid]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free_blocks[bid] = None
                if block.hash is None:
                    self.free_blocks.move_to_end(bid, last=False)
        seq.block_table = []
        seq.num_computed_tokens = seq.num_cached_tokens = seq.num_committed_blocks = 0

    def reset_prefix_cache(self) -> None:
        """Forget every cached hash (the weights changed, so cached K/V is stale)."""
        if any(b.ref_count for b in self.blocks):
            raise RuntimeError("cannot reset the prefix cache while sequences hold blocks")
        for block in self.blocks:
            block.hash = block.token_ids = None
        self.cached.clear()
        self.pending.clear()
