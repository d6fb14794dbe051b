"""How a request is sampled and when it stops."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    """Per-request sampling settings (vLLM's names and meanings).

    temperature 0 is greedy. top_k -1 (or 0) and top_p 1.0 are off; filters apply in the
    order temperature -> top_k -> top_p, top_p on the top_k-renormalized distribution.
    Stopping: the tokenizer's (and model config's) eos ids unless ignore_eos; `stop_token_ids`
    always; `stop` strings are matched on the decoded completion and cut from `.text`.
    `seed` makes a request reproducible whatever else shares its batch; sample i of n uses
    seed + i. Without a seed the engine derives one from its own seed and the request index.
    """
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 16
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    seed: int | None = None
    n: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        self.stop_token_ids = list(self.stop_token_ids)
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            raise ValueError(f"SamplingParams.top_k must be -1 (off) or >= 1, got {self.top_k}")
        if self.top_k == 0:
            self.top_k = -1
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if any(not s for s in self.stop):
            raise ValueError("SamplingParams.stop contains an empty string")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0
