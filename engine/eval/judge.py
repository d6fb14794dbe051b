"""Pairwise judging: which of two answers to the same instruction is better.

A judge sees (instruction, response A, response B) and names A or B. Judges favour a
position, so every pair is judged twice, once with the evaluated model's answer as A and
once as B. The model *wins* a prompt when both orders pick its answer, *loses* when both
pick the other, and *ties* otherwise (a disagreement, or a verdict that could not be read).
Win rate is (wins + ties / 2) / n; its standard error is the sample standard deviation of
the per-prompt scores (1, 0.5, 0), ddof=1, over sqrt(n).

Two LLM judges implement the small ``PairwiseJudge`` interface:
* ``GenerationJudge`` lets the judge model write its verdict (greedy, seed 0) and reads the
  first A or B it names;
* ``LogprobJudge`` compares log P("A") with log P("B") as the next token after the judge
  prompt through ``llm.score``, so it needs no top-k API. With the chat template the
  continuation is "A"/"B" (the assistant turn starts fresh); on a raw prompt, which ends
  with "Better answer:", it is " A"/" B" with the space a BPE tokenizer fuses into the
  letter's token.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from engine.jsonl import json_records
from engine.prompt_format import chat_prompt

DEFAULT_JUDGE_PROMPTS = Path(__file__).parent / "data" / "judge_prompts.jsonl"

JUDGE_TEMPLATE = """\
Two assistants answered the same instruction. Decide which answer is better: the one that \
does what the instruction asks, is correct, and is clear and helpful. Do not prefer an \
answer for being longer, and do not let the order in which the answers appear sway you.

[Instruction]
{instruction}

[Answer A]
{response_a}

[Answer B]
{response_b}

Which answer is better? Reply with the single letter A or B."""

RAW_ANSWER_CUE = "\nBetter answer:"


class PairwiseJudge(Protocol):
    """Names the better response of each triple: "A", "B", or None when it cannot tell."""

    def judge(self, instructions: Sequence[str], responses_a: Sequence[str],
              responses_b: Sequence[str]) -> list[str | None]: ...


@dataclass(frozen=True)
class PairwiseResult:
    """Outcome of judging a model against a reference on n prompts (scores are 1/0.5/0)."""
    wins: int
    ties: int
    losses: int
    scores: tuple[float, ...]
    win_rate: float
    standard_error: float

    @property
    def n(self) -> int:
        return len(self.scores)

    def as_dict(self) -> dict:
        return {"win_rate": self.win_rate, "win_rate_se": self.standard_error,
                "wins": self.wins, "ties": self.ties, "losses": self.losses, "n": self.n}


def win_rate_with_se(scores: Sequence[float]) -> tuple[float, float]:
    """Mean of per-prompt scores and its standard error (sample std, ddof=1, over sqrt n).

    The standard error is NaN for fewer than two prompts.
    """
    n = len(scores)
    if n == 0:
        raise ValueError("no judged prompts")
    mean = sum(scores) / n
    if n < 2:
        return mean, math.nan
    variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
    return mean, math.sqrt(variance / n)


def combine_orders(model_first: Sequence[str | None],
                   model_second: Sequence[str | None]) -> list[float]:
    """Per-prompt scores from the two orders: model shown as A, then model shown as B."""
    scores = []
    for a_order, b_order in zip(model_first, model_second, strict=True):
        if a_order == "A" and b_order == "B":
            scores.append(1.0)
        elif a_order == "B" and b_order == "A":
            scores.append(0.0)
        else:
            scores.append(0.5)
    return scores


def compare_answers(judge: PairwiseJudge, instructions: Sequence[str],
                    model_answers: Sequence[str], reference_answers: Sequence[str]
                    ) -> PairwiseResult:
    """Judge the model against the reference in both orders and count the outcomes."""
    if not len(instructions) == len(model_answers) == len(reference_answers):
        raise ValueError(f"{len(instructions)} instructions, {len(model_answers)} model answers "
                         f"and {len(reference_answers)} reference answers")
    model_first = judge.judge(instructions, model_answers, reference_answers)
    model_second = judge.judge(instructions, reference_answers, model_answers)
    scores = combine_orders(model_first, model_second)
    rate, se = win_rate_with_se(scores)
    return PairwiseResult(wins=scores.count(1.0), ties=scores.count(0.5),
                          losses=scores.count(0.0), scores=tuple(scores),
                          win_rate=rate, standard_error=se)


def judge_prompt(instruction: str, response_a: str, response_b: str, *, tokenizer=None,
                 use_chat_template: bool = False) -> str:
    """The judge's full prompt text, chat-formatted when ``use_chat_template``."""
    body = JUDGE_TEMPLATE.format(instruction=instruction.strip(), response_a=response_a.strip(),
                                 response_b=response_b.strip())
    if use_chat_template:
        return chat_prompt(tokenizer, body)
    return body + RAW_ANSWER_CUE


_LETTER_NAME = r"(?:(?i:answer|response)\s*[:(]?\s*)"
_LEADING_LETTER = re.compile(r"^[\s*\"'(\[]*" + _LETTER_NAME + r"?([AB])\b")
_NAMED_LETTER = re.compile(r"\b" + _LETTER_NAME + r"([AB])\b")


def parse_verdict(text: str) -> str | None:
    """The letter a judge's reply names: "A", "B", or None.

    Reads a letter at the start ("A", " B.", "**A**", "Answer: B") or else the first
    letter named as "answer X"/"response X". A reply that names both ("answer A is worse
    than answer B") reads as the first named, which is why the prompt asks for one letter.
    """
    match = _LEADING_LETTER.match(text) or _NAMED_LETTER.search(text)
    return match.group(1).upper() if match else None


@dataclass
class GenerationJudge:
    """An LLM that writes its verdict; greedy with seed 0, so the same inputs give the same
    verdicts."""
    llm: object
    use_chat_template: bool = False
    max_tokens: int = 8

    def judge(self, instructions, responses_a, responses_b) -> list[str | None]:
        from engine import SamplingParams

        prompts = [judge_prompt(i, a, b, tokenizer=getattr(self.llm, "tokenizer", None),
                                use_chat_template=self.use_chat_template)
                   for i, a, b in zip(instructions, responses_a, responses_b, strict=True)]
        # No newline stop: a judge may open with a blank line before its letter.
        params = SamplingParams(temperature=0.0, max_tokens=self.max_tokens, seed=0)
        return [parse_verdict(out.text) for out in self.llm.generate(prompts, params)]


@dataclass
class LogprobJudge:
    """An LLM whose verdict is the likelier of the two letters as its next token."""
    llm: object
    use_chat_template: bool = False

    def judge(self, instructions, responses_a, responses_b) -> list[str | None]:
        prompts = [judge_prompt(i, a, b, tokenizer=getattr(self.llm, "tokenizer", None),
                                use_chat_template=self.use_chat_template)
                   for i, a, b in zip(instructions, responses_a, responses_b, strict=True)]
        space = "" if self.use_chat_template else " "
        scored = self.llm.score(prompts + prompts, [space + "A"] * len(prompts)
                                + [space + "B"] * len(prompts))
        verdicts = []
        for a, b in zip(scored[:len(prompts)], scored[len(prompts):]):
            verdicts.append("A" if a.logprob > b.logprob else "B" if b.logprob > a.logprob else None)
        return verdicts


def make_judge(llm, mode: str = "generate", *, use_chat_template: bool = False) -> PairwiseJudge:
    """A judge over ``llm``: ``mode`` is "generate" or "logprob"."""
    if mode == "generate":
        return GenerationJudge(llm, use_chat_template=use_chat_template)
    if mode == "logprob":
        return LogprobJudge(llm, use_chat_template=use_chat_template)
    raise ValueError(f"judge_mode must be 'generate' or 'logprob', got {mode!r}")


def read_judge_prompts(path: str | Path | None = None) -> list[str]:
    """Instructions for pairwise judging: JSONL with an ``instruction`` string per line."""
    path = Path(path) if path is not None else DEFAULT_JUDGE_PROMPTS
    instructions = []
    for number, record in json_records(path):
        if not isinstance(record.get("instruction"), str) or not record["instruction"].strip():
            raise ValueError(f"{path}:{number}: needs a non-empty string field 'instruction'")
        instructions.append(record["instruction"])
    if not instructions:
        raise ValueError(f"{path}: no instructions")
    return instructions
