"""When a sequence stops, and its final text.

Stop strings are matched on the decoded completion. Only a window of the last tokens is
decoded each step (wide enough to hold the longest stop string even when every character
took four byte-level tokens); the full completion is decoded once a window matches, to find
where the stop string starts.
"""
from __future__ import annotations

from engine.generation.sequence import Sequence


def check_stop(seq: Sequence, tokenizer, max_model_len: int) -> str | None:
    """After `seq` got a new token: "stop", "length" or None (keep going)."""
    if seq.token_ids[-1] in seq.eos_token_ids:
        return "stop"
    stops = seq.params.stop
    if stops and tokenizer is not None:
        window = 4 * max(len(s) for s in stops) + 8
        tail = tokenizer.decode(seq.completion_token_ids[-window:])
        if any(s in tail for s in stops):
            text = tokenizer.decode(seq.completion_token_ids)
            found = [i for i in (text.find(s) for s in stops) if i >= 0]
            if found:
                seq.stop_text_end = min(found)
                return "stop"
    if seq.num_completion_tokens >= seq.max_tokens or seq.num_tokens >= max_model_len:
        return "length"
    return None


def completion_text(seq: Sequence, tokenizer) -> str:
    if tokenizer is None:
        return ""
    text = tokenizer.decode(seq.completion_token_ids)
    return text if seq.stop_text_end is None else text[:seq.stop_text_end]
