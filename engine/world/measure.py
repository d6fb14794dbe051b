"""What the loop's report measures in the toy world, where every answer can be checked.

  heldout_accuracy(generate_fn, tasks)   does the model answer evaluation tasks correctly?
  judge_accuracy(score_fn, items)        does its judge tell right answers from wrong ones?
  kept_pair_correctness(kept, answered)  is the data the loop keeps more often right than
                                         the data it generated?

The model is reached only through the functions passed in, so these run on scripted
answers in the tests and on an LLM in the loop.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.selfalign.response_filters import clean_response
from engine.world.tasks import WorldTask, check, family_of, wrong_output


def _call_batch(fn: Callable, batch: list, what: str) -> list:
    results = list(fn(batch))
    if len(results) != len(batch):
        raise ValueError(f"{what} returned {len(results)} results for {len(batch)} inputs")
    return results


def heldout_accuracy(generate_fn: Callable[[list[str]], list[str]],
                     tasks: Sequence[WorldTask], first_line_only: bool = False) -> dict[str, float]:
    """Share of tasks answered correctly, per family and "overall".

    generate_fn: raw prompts (WorldTask.prompt, the base-model format) -> response texts,
    one per prompt (the loop passes greedy generation). A response is cleaned as the loop
    cleans it (cut at a chat special token, stripped); with first_line_only, only its first
    line is judged, which forgives a model that answers and then keeps writing.
    """
    if not tasks:
        raise ValueError("heldout_accuracy: no tasks")
    responses = _call_batch(generate_fn, [t.prompt for t in tasks], "generate_fn")
    right: dict[str, list[bool]] = {}
    for task, response in zip(tasks, responses):
        text = clean_response(response)
        if first_line_only:
            text = text.split("\n", 1)[0]
        right.setdefault(task.family, []).append(bool(check(task.instruction, task.input, text)))
    result = {family: sum(v) / len(v) for family, v in sorted(right.items())}
    result["overall"] = sum(sum(v) for v in right.values()) / len(tasks)
    return result


@dataclass(frozen=True)
class JudgeItem:
    """A response to a world task, and whether it is right."""
    instruction: str
    input: str
    response: str
    correct: bool


def judge_items(tasks: Sequence[WorldTask], seed: int = 0) -> list[JudgeItem]:
    """One right and one wrong response per task, in that order."""
    rng = random.Random(f"world-judge-{seed}")
    items = []
    for task in tasks:
        items.append(JudgeItem(task.instruction, task.input, task.output, True))
        items.append(JudgeItem(task.instruction, task.input, wrong_output(task, rng), False))
    return items


def _prob_greater(higher: list[float], lower: list[float]) -> float:
    """P(x > y) + P(x == y) / 2 for x from `higher`, y from `lower` (the AUC)."""
    lower = sorted(lower)
    wins = 0.0
    for x in higher:
        below = bisect.bisect_left(lower, x)
        ties = bisect.bisect_right(lower, x) - below
        wins += below + ties / 2
    return wins / (len(higher) * len(lower))


def judge_accuracy(score_fn: Callable[[list[tuple[str, str, str]]], list[float | None]],
                   items: Sequence[JudgeItem], threshold: float = 8.0) -> dict[str, float | None]:
    """How well a judge's scores separate right answers from wrong ones.

    score_fn: (instruction, input, response) triples -> scores (None = no parsable score,
    which the loop treats as a dropped pair). Returns:
      accuracy       share of items where "score > threshold" equals "correct" (None counts
                     as not above: a right answer without a score is lost, a wrong one dropped)
      auc            P(score of a right answer > score of a wrong one), ties half; over scored
                     items only; None when either side has none
      unparsed       share of items without a score
      mean_correct, mean_wrong   mean scores (None when no scores)
      kept_correct   share of right answers among those scored above threshold (None if none)
    """
    if not items:
        raise ValueError("judge_accuracy: no items")
    scores = _call_batch(score_fn, [(i.instruction, i.input, i.response) for i in items],
                         "score_fn")
    hits = sum((s is not None and s > threshold) == i.correct for i, s in zip(items, scores))
    right = [s for i, s in zip(items, scores) if i.correct and s is not None]
    wrong = [s for i, s in zip(items, scores) if not i.correct and s is not None]
    kept = [i.correct for i, s in zip(items, scores) if s is not None and s > threshold]
    return {
        "accuracy": hits / len(items),
        "auc": _prob_greater(right, wrong) if right and wrong else None,
        "unparsed": sum(s is None for s in scores) / len(items),
        "mean_correct": sum(right) / len(right) if right else None,
        "mean_wrong": sum(wrong) / len(wrong) if wrong else None,
        "kept_correct": sum(kept) / len(kept) if kept else None,
    }


def _response_of(record: dict, where: str) -> str:
    for key in ("output", "response"):
        if isinstance(record.get(key), str):
            return record[key]
    raise ValueError(f"{where}: record has no 'output' or 'response' string")


def pair_correctness(records: Sequence[dict], name: str = "records") -> dict:
    """Checker verdicts over loop records ({"instruction", "input"?, "output" | "response"}).

    Returns n, verifiable (a world task), correct, correct_share (of verifiable; None when
    none), verifiable_share, and by_family {family: correct share}.
    """
    verdicts: dict[str, list[bool]] = {}
    n = 0
    for k, record in enumerate(records):
        where = f"{name}[{k}]"
        if not isinstance(record, dict) or not isinstance(record.get("instruction"), str):
            raise ValueError(f"{where}: expected a record with an 'instruction' string")
        n += 1
        instruction, task_input = record["instruction"], record.get("input") or ""
        verdict = check(instruction, task_input, _response_of(record, where))
        if verdict is not None:
            verdicts.setdefault(family_of(instruction, task_input), []).append(verdict)
    verifiable = sum(len(v) for v in verdicts.values())
    correct = sum(sum(v) for v in verdicts.values())
    return {
        "n": n, "verifiable": verifiable, "correct": correct,
        "correct_share": correct / verifiable if verifiable else None,
        "verifiable_share": verifiable / n if n else None,
        "by_family": {f: sum(v) / len(v) for f, v in sorted(verdicts.items())},
    }


def kept_pair_correctness(kept_records: Sequence[dict],
                          answered_records: Sequence[dict] | None = None) -> dict:
    """pair_correctness of the kept training pairs, and of every answered pair when given,
    with `lift` = kept correct_share - answered correct_share (what filtering bought)."""
    result = {"kept": pair_correctness(kept_records, "kept_records")}
    if answered_records is not None:
        result["answered"] = pair_correctness(answered_records, "answered_records")
        kept_share = result["kept"]["correct_share"]
        all_share = result["answered"]["correct_share"]
        result["lift"] = (kept_share - all_share
                          if kept_share is not None and all_share is not None else None)
    return result


def assessed_pairs_judge_auc(assessed_records: Sequence[dict]) -> dict:
    """How well the loop's own judge ranked this iteration's own answers, by the checker.

    assessed_records: the loop's assessed.jsonl records; each one's deciding scores are
    "scores" (sampled mode) or "logprob_scores", and the pair's score is the lowest of them,
    as selection's "both" level reads it. Returns auc (P(score of a right pair > score of a
    wrong one), ties half; None without both kinds), right, wrong (verifiable pairs with a
    score) and unscored (verifiable pairs with an unparsed score, which the loop drops).
    """
    right, wrong, unscored = [], [], 0
    for k, record in enumerate(assessed_records):
        where = f"assessed_records[{k}]"
        scores = record.get("scores", record.get("logprob_scores"))
        if not isinstance(scores, dict) or not scores:
            raise ValueError(f"{where}: no 'scores' or 'logprob_scores' to read")
        verdict = check(record["instruction"], record.get("input") or "", _response_of(record, where))
        if verdict is None:
            continue
        if any(v is None for v in scores.values()):
            unscored += 1
            continue
        (right if verdict else wrong).append(min(scores.values()))
    return {"auc": _prob_greater(right, wrong) if right and wrong else None,
            "right": len(right), "wrong": len(wrong), "unscored": unscored}


def task_list_quality(continuations: Sequence[tuple[str, str]], num_examples: int = 5) -> dict:
    """How usable the model's continuations of the synthesis meta-prompt are.

    continuations: (text, finish_reason) per meta-prompt, the text starting right after
    "{num_examples + 1}. Instruction:". Items are parsed as the loop parses them
    (parse_generated_tasks) and put through its heuristic prompt filters. Returns counts
    (meta_prompts, items, passes_filters, recognized, heldout_side, correct_outputs) and
    shares: items_per_meta_prompt, parsed_share (meta-prompts giving at least one item),
    recognized_share (items the checker recognizes as a world task), filter_pass_share,
    heldout_share (recognized items on the evaluation side of the split), plus by_family
    counts of recognized items.
    """
    from engine.selfalign.synthesis import filter_prompt, parse_generated_tasks
    from engine.world.tasks import is_held_out

    if not continuations:
        raise ValueError("task_list_quality: no continuations")
    items, with_items = [], 0
    for text, finish_reason in continuations:
        parsed = parse_generated_tasks(text, num_examples, finish_reason)
        with_items += bool(parsed)
        items += parsed
    passing = [t for t in items if filter_prompt(t) is None]
    by_family: dict[str, int] = {}
    heldout = 0
    for t in items:
        family = family_of(t.instruction, t.input)
        if family is not None:
            by_family[family] = by_family.get(family, 0) + 1
            heldout += is_held_out(t.instruction, t.input)
    recognized = sum(by_family.values())
    n = len(continuations)
    return {
        "meta_prompts": n, "items": len(items), "passes_filters": len(passing),
        "recognized": recognized, "heldout_side": heldout,
        "items_per_meta_prompt": len(items) / n,
        "parsed_share": with_items / n,
        "recognized_share": recognized / len(items) if items else None,
        "filter_pass_share": len(passing) / len(items) if items else None,
        "heldout_share": heldout / recognized if recognized else None,
        "by_family": dict(sorted(by_family.items())),
    }
