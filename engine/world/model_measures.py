"""The world's measures applied to a model through an engine.LLM, with the loop's own prompts.

    llm = LLM("engine/world/data/base_model", dtype="float32", device="cpu")
    measure_model(llm)     # {"heldout": ..., "judge": {"logprob": ..., "sample": ...},
                           #  "synthesis": ...}

Everything here is raw text, the base model's format in the loop: held-out tasks as
raw_prompt, judge prompts from build_assessment_prompt, synthesis from build_meta_prompt
over the world's seed tasks. Judge scores are made the two ways the loop makes them: the
expectation over "1||".."10||" log-probs (assessment.mode = "logprob") and the greedy
judgement parsed by the reference rule (mode = "sample" at temperature 0).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from engine.selfalign.assessment_prompts import build_assessment_prompt, score_continuations
from engine.selfalign.scores import expected_score, parse_score
from engine.selfalign.synthesis import build_meta_prompt
from engine.world.measure import (assessed_pairs_judge_auc, heldout_accuracy, judge_accuracy,
                                  judge_items, task_list_quality)
from engine.world.seeds import seed_tasks_for_world
from engine.world.tasks import WorldTask, check, held_out_tasks

Triple = tuple[str, str, str]   # (instruction, input, response)


def greedy_answers(llm, max_tokens: int = 32) -> Callable[[list[str]], list[str]]:
    """Raw prompts -> greedy completions (heldout_accuracy's generate_fn)."""
    from engine.generation import SamplingParams

    def generate(prompts: list[str]) -> list[str]:
        outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens),
                            use_tqdm=False)
        return [o.text for o in outs]
    return generate


def logprob_scores(llm, triples: Sequence[Triple], kind: str) -> list[float]:
    """Expected 1..10 score of each triple under the judge's log-probs of "N||" (the loop's
    logprob mode), one prompt per triple and ten scored continuations each."""
    conts = score_continuations()
    prompts = [build_assessment_prompt(kind, *t) for t in triples]
    flat = llm.score([p for p in prompts for _ in conts],
                     [c for _ in prompts for c in conts.values()])
    out = []
    for i in range(len(prompts)):
        row = flat[i * len(conts):(i + 1) * len(conts)]
        out.append(expected_score({n: s.logprob for n, s in zip(conts, row)}))
    return out


def sampled_scores(llm, triples: Sequence[Triple], kind: str, max_tokens: int = 16,
                   temperature: float = 0.0, seed: int = 0) -> list[int | None]:
    """The judge's written score ("9||..."), parsed by the reference rule; None if none."""
    from engine.generation import SamplingParams

    prompts = [build_assessment_prompt(kind, *t) for t in triples]
    params = [SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed + i)
              for i in range(len(prompts))]
    return [parse_score(o.text) for o in llm.generate(prompts, params, use_tqdm=False)]


def judge_fn(llm, mode: str, kinds: Sequence[str] = ("quality", "following"),
             max_tokens: int = 16) -> Callable[[list[Triple]], list[float | None]]:
    """judge_accuracy's score_fn: the lowest score over `kinds` (a pair passes the loop's
    "both" level when its lowest score clears the threshold); None if any is unparsed."""
    if mode not in ("logprob", "sample"):
        raise ValueError(f"judge mode must be 'logprob' or 'sample', got {mode!r}")

    def score(triples: list[Triple]) -> list[float | None]:
        per_kind = [logprob_scores(llm, triples, k) if mode == "logprob"
                    else sampled_scores(llm, triples, k, max_tokens) for k in kinds]
        return [None if any(v is None for v in vals) else min(vals) for vals in zip(*per_kind)]
    return score


def sample_answers(llm, tasks: Sequence[WorldTask], samples: int = 1, seed: int = 0,
                   temperature: float = 1.0, top_p: float = 0.95,
                   max_tokens: int = 32) -> list[tuple[WorldTask, str, bool]]:
    """(task, response, right) for `samples` answers to each task, sampled as the loop's
    response stage samples (world.toml: temperature 1.0, top_p 0.95, 32 tokens), cleaned as
    it cleans them, and judged by the checker."""
    from engine.generation import SamplingParams
    from engine.selfalign.response_filters import clean_response

    outs = llm.generate([t.prompt for t in tasks],
                        SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                       n=samples, seed=seed), use_tqdm=False)
    answers = []
    for task, out in zip(tasks, outs):
        for sample in out.outputs:
            response = clean_response(sample.text)
            answers.append((task, response, bool(check(task.instruction, task.input, response))))
    return answers


def judge_on_own_answers(llm, tasks_per_family: int = 12, samples: int = 4, seed: int = 3) -> dict:
    """The judge where the loop needs it: the model answers held-out tasks as the loop's
    response stage samples (`samples` answers each), then grades those answers in logprob
    mode (lowest of quality and following). Returns assessed_pairs_judge_auc overall and by
    family, plus right_share, the share of answers the checker accepts."""
    answers = sample_answers(llm, held_out_tasks(tasks_per_family, seed=seed), samples, seed)
    triples = [(t.instruction, t.input, r) for t, r, _ in answers]
    per_kind = {k: logprob_scores(llm, triples, k) for k in ("quality", "following")}
    records = [{"family": t.family, "instruction": t.instruction, "input": t.input,
                "response": r, "logprob_scores": {k: v[i] for k, v in per_kind.items()}}
               for i, (t, r, _) in enumerate(answers)]
    result = assessed_pairs_judge_auc(records)
    result["right_share"] = result["right"] / max(1, result["right"] + result["wrong"])
    result["by_family"] = {f: assessed_pairs_judge_auc([r for r in records if r["family"] == f])
                           for f in sorted({r["family"] for r in records})}
    return result


def synthesis_continuations(llm, n_meta_prompts: int, max_tokens: int = 100, seed: int = 0,
                            num_examples: int = 5, n_seeds: int = 36) -> list[tuple[str, str]]:
    """(text, finish_reason) of the model continuing n meta-prompts over the world's seeds,
    sampled as the loop samples (temperature 1.0, top_p 0.95, stop at item 20)."""
    from engine.generation import SamplingParams

    seeds = seed_tasks_for_world(n_seeds)
    rng = random.Random(f"world-synthesis-{seed}")
    metas = [build_meta_prompt(seeds, rng, num_examples=num_examples)
             for _ in range(n_meta_prompts)]
    params = [SamplingParams(temperature=1.0, top_p=0.95, max_tokens=max_tokens, stop=["\n20."],
                             seed=seed * 100_003 + i) for i in range(len(metas))]
    return [(o.text, o.finish_reason) for o in llm.generate(metas, params, use_tqdm=False)]


def measure_model(llm, heldout_per_family: int = 20, judge_per_family: int = 10,
                  meta_prompts: int = 32, synthesis_max_tokens: int = 100,
                  threshold: float = 8.0, seed: int = 0) -> dict:
    """The three things a base model for the loop must do, measured with the checker.

    heldout    greedy accuracy per family on held_out_tasks(heldout_per_family, seed)
    judge      judge_accuracy (AUC, accuracy at `threshold`, ...) over one right and one
               wrong answer per task of held_out_tasks(judge_per_family, seed), for the
               logprob and the sampled score, each the lowest of quality and following
    judge_own  judge_on_own_answers: the AUC on the model's own sampled answers
    synthesis  task_list_quality of `meta_prompts` sampled continuations
    """
    tasks = held_out_tasks(heldout_per_family, seed=seed)
    items = judge_items(held_out_tasks(judge_per_family, seed=seed), seed=seed)
    return {
        "heldout": heldout_accuracy(greedy_answers(llm), tasks),
        "judge": {mode: judge_accuracy(judge_fn(llm, mode), items, threshold)
                  for mode in ("logprob", "sample")},
        "judge_own": judge_on_own_answers(llm, seed=seed + 3),
        "synthesis": task_list_quality(
            synthesis_continuations(llm, meta_prompts, synthesis_max_tokens, seed)),
    }
