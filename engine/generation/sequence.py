"""One sequence in flight: its tokens, how many have K/V in the cache, and its block table."""
from __future__ import annotations

import itertools
from enum import Enum, auto

import numpy as np

from engine.generation.sampling_params import SamplingParams


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


def prefix_hash(previous: int, token_ids: tuple[int, ...]) -> int:
    """Hash of a full KV block: chained over the previous block's hash, so equal hashes mean
    equal whole prefixes (up to collisions, which BlockManager rules out by comparing ids)."""
    return hash((previous, token_ids))


class Sequence:
    """Token state of one sample of one request.

    `num_computed_tokens` tokens have their K/V in the paged cache (blocks `block_table`); the
    rest are computed in chunks by later steps. When the last uncomputed token is processed the
    sequence samples its next token (generation) or finishes (scoring: max_tokens == 0).
    """
    _ids = itertools.count()

    def __init__(self, token_ids: list[int], params: SamplingParams, *, request_index: int,
                 sample_index: int = 0, seed: int = 0, max_tokens: int | None = None,
                 eos_token_ids: frozenset[int] = frozenset(), logprob_start: int | None = None,
                 top_logprobs: int = 0):
        self.seq_id = next(Sequence._ids)
        self.status = SequenceStatus.WAITING
        self.params = params
        self.request_index = request_index
        self.sample_index = sample_index
        self.seed = seed                          # effective seed of this sample
        self.token_ids = list(token_ids)
        self.num_prompt_tokens = len(token_ids)
        self.max_tokens = params.max_tokens if max_tokens is None else max_tokens
        self.eos_token_ids = eos_token_ids
        # scoring: record log p(token[p+1] | tokens[:p+1]) for p >= logprob_start
        self.logprob_start = logprob_start
        self.prompt_logprobs: list[float] = []
        # next-token probing: top-k log-probs after the last token
        self.top_logprobs = top_logprobs
        self.next_token_logprobs: dict[int, float] = {}

        self.num_computed_tokens = 0
        self.num_cached_tokens = 0                # prefix-cache hits at the last admission
        self.block_table: list[int] = []
        self._block_array: tuple[list[int], int, np.ndarray] | None = None   # cached int32 copy
        self.block_hashes: list[int] = []         # prefix hashes of full blocks, filled lazily
        self.num_committed_blocks = 0             # full computed blocks registered in the cache
        self.pending_blocks = range(0)            # block indices announced as being computed
        self.finish_reason: str | None = None
        self.stop_text_end: int | None = None     # where a matched stop string starts in .text

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def completion_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status == SequenceStatus.FINISHED

    @property
    def samples(self) -> bool:
        """Whether finishing its uncomputed tokens yields a token to sample."""
        return self.max_tokens > 0

    def block_table_array(self) -> np.ndarray:
        """block_table as int32 numpy, re-converted only when the table grew or was replaced."""
        cached = self._block_array
        if cached is None or cached[0] is not self.block_table or cached[1] != len(self.block_table):
            arr = np.asarray(self.block_table, dtype=np.int32)
            self._block_array = cached = (self.block_table, len(self.block_table), arr)
        return cached[2]

    def block_tokens(self, i: int, block_size: int) -> tuple[int, ...]:
        return tuple(self.token_ids[i * block_size:(i + 1) * block_size])

    def prefix_hashes(self, block_size: int) -> list[int]:
        """Hashes of every full block of the current tokens (extended as tokens arrive)."""
        full = len(self.token_ids) // block_size
        for i in range(len(self.block_hashes), full):
            prev = self.block_hashes[i - 1] if i else -1
            self.block_hashes.append(prefix_hash(prev, self.block_tokens(i, block_size)))
        return self.block_hashes
