"""What generate / score return."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompletionOutput:
    index: int                     # sample index within its request (0..n-1)
    text: str                      # decoded completion, special tokens skipped, stop string cut
    token_ids: list[int]           # generated ids; with a stop string, up to the token that
                                   # completed it (so the ids may decode past .text)
    finish_reason: str             # "stop" (eos, stop token or stop string) | "length"


@dataclass
class RequestOutput:
    index: int                     # position in the generate() input
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.outputs[0].text

    @property
    def token_ids(self) -> list[int]:
        return self.outputs[0].token_ids

    @property
    def finish_reason(self) -> str:
        return self.outputs[0].finish_reason


@dataclass
class ScoreOutput:
    logprob: float                 # sum of token_logprobs
    token_logprobs: list[float]    # log p(continuation token j | prompt + earlier ones)
    prompt_token_ids: list[int]
    continuation_token_ids: list[int]


@dataclass
class GenerationStats:
    """Counters of one generate / score call (tests check prefix caching through them)."""
    num_steps: int = 0
    num_decode_steps: int = 0
    num_prompt_tokens: int = 0           # prompt tokens over all sequences
    num_computed_prompt_tokens: int = 0  # of those, run through the model (misses, recomputes)
    num_cached_prompt_tokens: int = 0    # taken from the prefix cache at admission
    num_recomputed_tokens: int = 0       # completion tokens recomputed after preemption
    num_output_tokens: int = 0
    num_preemptions: int = 0
    elapsed_s: float = 0.0
