"""One labelled progress bar per stage: records done, the engine's tokens/s and an ETA, on
rank 0 only, and quiet when stderr is not a terminal (the stage's start, end and counts
still go to run.log)."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


class StageBar:
    """tqdm over a stage's records; update(n, llm) also adds the tokens the engine computed
    in its last call (prompt tokens run through the model plus generated ones)."""

    def __init__(self, label: str, total: int, is_main: bool):
        self.bar = tqdm(total=total, desc=label, unit="rec", dynamic_ncols=True, leave=False,
                        disable=not (is_main and sys.stderr.isatty()))
        self.tokens, self.seconds = 0, 0.0

    def update(self, n: int, llm=None) -> None:
        stats = getattr(llm, "stats", None)       # an engine.LLM's counters of its last call
        if stats is not None and stats.elapsed_s > 0:
            self.tokens += stats.num_computed_prompt_tokens + stats.num_output_tokens
            self.seconds += stats.elapsed_s
            self.bar.set_postfix_str(f"{self.tokens / self.seconds:.0f} tok/s", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def stage_bar(label: str, total: int, is_main: bool) -> StageBar:
    return StageBar(label, total, is_main)
