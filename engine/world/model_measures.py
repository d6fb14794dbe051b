"""Measures of one model in the world, through an engine.LLM and the loop's own prompts.

  heldout_measures   greedy accuracy on the heldout phrasing over practised, kept-out and
                     taught targets, the practice phrasing over practised targets, and the
                     forward facts
  sample_answers     answers sampled at temperature 1 (the loop's response stage), checked
  pass_at_k          share of targets with a right answer among k samples
  judge_scores       the explain-then-score judge (the loop's judge prompt), greedy
  synthesis_measures what the model writes from the loop's meta-prompt over the world seeds

`prompt_of(instruction)` is the answer prompt the loop gives that model; for a base model,
engine.prompt_format.raw_prompt.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from engine.selfalign.assessment_prompts import build_assessment_prompt
from engine.selfalign.response_filters import clean_response
from engine.selfalign.scores import parse_judgement
from engine.selfalign.synthesis import build_meta_prompt, list_end_stop, parse_generated_tasks
from engine.prompt_format import raw_prompt as format_raw_prompt
from engine.world.families import FAMILIES
from engine.world.seeds import seed_tasks
from engine.world.measure import accuracy, group_accuracy, judge_quality
from engine.world.tasks import WorldTask, parse_task, targets_in

ANSWER_TOKENS = 8    # "Pair 12 and 13" is 4 tokens, "Word cat" 2


def generate(llm, prompts: list[str], temperature: float = 0.0, n: int = 1, seed: int = 0,
             max_tokens: int = ANSWER_TOKENS, stop: list[str] | None = None) -> list[list[str]]:
    """Each prompt's n completions, cleaned as the loop's response stage cleans them."""
    from engine.generation import SamplingParams   # here: reading a config must not load torch

    params = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=max_tokens, n=n,
                            seed=seed, stop=stop or [])
    outs = llm.generate(prompts, params, use_tqdm=False)
    return [[clean_response(s.text) for s in o.outputs] for o in outs]


def check_answers(tasks: list[WorldTask], answers: list[str]) -> list[tuple[str, bool]]:
    return [(t.family, FAMILIES[t.family].check(t.target, a).right) for t, a in zip(tasks, answers)]


def heldout_measures(llm, prompt_of: Callable[[str], str] = format_raw_prompt) -> dict:
    """Greedy accuracy (with stderr, per family) of the groups the loop report shows."""
    sets = {"practised": ("practised", "heldout"), "unseen": ("kept_out", "heldout"),
            "taught": ("taught", "heldout"), "practised_practice_phrasing": ("practised", "practice")}
    tasks = {name: [WorldTask(f, t, phrasing) for f, t in targets_in(group)]
             for name, (group, phrasing) in sets.items()}
    flat = [t for ts in tasks.values() for t in ts]
    facts = [(q, a) for fam in FAMILIES.values() for q, a in fam.forward_facts()]
    answers = generate(llm, [prompt_of(t.instruction) for t in flat] + [prompt_of(q) for q, _ in facts])
    answers = [a[0] for a in answers]
    out, k = {}, 0
    for name, ts in tasks.items():
        out[name] = group_accuracy(check_answers(ts, answers[k:k + len(ts)]))
        k += len(ts)
    out["forward"] = accuracy([a == want for (_, want), a in zip(facts, answers[k:])])
    return out


def sample_answers(llm, tasks: list[WorldTask], k: int, seed: int,
                   prompt_of: Callable[[str], str] = format_raw_prompt) -> list[list[str]]:
    """k answers per task at temperature 1, top_p 1."""
    return generate(llm, [prompt_of(t.instruction) for t in tasks], temperature=1.0, n=k, seed=seed)


def pass_at_k(tasks: list[WorldTask], samples: list[list[str]]) -> dict:
    """Share of tasks with at least one right answer among their samples, per family."""
    return group_accuracy((t.family, any(FAMILIES[t.family].check(t.target, s).right for s in ss))
                          for t, ss in zip(tasks, samples))


def judge_scores(llm, triples: list[tuple[str, str, str]], kind: str = "quality",
                 max_tokens: int = 24) -> tuple[list[int | None], list[str]]:
    """Greedy explain-then-score judgements of (instruction, input, response) triples with
    the loop's judge prompt: (scores, texts); a score is None when the text has none."""
    prompts = [build_assessment_prompt(kind, i, x, r, judge_format="explain_first")
               for i, x, r in triples]
    texts = [t[0] for t in generate(llm, prompts, max_tokens=max_tokens)]
    return [parse_judgement(t, "explain_first") for t in texts], texts


def judge_on_samples(tasks: list[WorldTask], samples: list[list[str]],
                     scores: list[int | None], threshold: float) -> dict:
    """judge_quality of keep = score > threshold over the distinct (task, answer) pairs
    (the order judge_triples gives), plus the unparsed count."""
    pairs = distinct_pairs(tasks, samples)
    right = [FAMILIES[t.family].check(t.target, a).right for t, a in pairs]
    kept = [s is not None and s > threshold for s in scores]
    return {**judge_quality(right, kept), "unparsed": sum(s is None for s in scores),
            "threshold": threshold}


def distinct_pairs(tasks: list[WorldTask], samples: list[list[str]]) -> list[tuple[WorldTask, str]]:
    """(task, answer) once per distinct answer of each task, as the loop deduplicates."""
    return [(t, a) for t, ss in zip(tasks, samples) for a in dict.fromkeys(ss)]


def synthesis_measures(llm, n_prompts: int, seed: int, max_tokens: int = 200,
                       num_examples: int = 5) -> dict:
    """Parse what the model writes after n_prompts meta-prompts over the world seeds: tasks
    per prompt, and how many are world tasks by family, out of range, kept out or not world."""
    rng = random.Random(f"world-synthesis-{seed}")
    seeds = seed_tasks()
    prompts = [build_meta_prompt(seeds, rng, num_examples) for _ in range(n_prompts)]
    from engine.generation import SamplingParams

    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=max_tokens, stop=list_end_stop(),
                            seed=seed)
    outs = llm.generate(prompts, params, use_tqdm=False)
    kinds: Counter = Counter()
    for o in outs:
        for task in parse_generated_tasks(o.text, num_examples, o.outputs[0].finish_reason):
            parsed = parse_task(task.instruction, task.input)
            if isinstance(parsed, str):
                kinds[parsed] += 1
            elif parsed.group == "kept_out":
                kinds["kept-out target"] += 1
            else:
                kinds[f"{parsed.family} ({parsed.phrasing}, {parsed.group})"] += 1
    return {"meta_prompts": n_prompts, "tasks": sum(kinds.values()),
            "tasks_per_prompt": round(sum(kinds.values()) / max(1, n_prompts), 2),
            "by_kind": dict(kinds.most_common())}


def measure_base_model(llm, seed: int = 0, pass_k: int = 8, threshold: float = 8.0,
                       judge: Callable | None = None) -> dict:
    """M_0's record: held-out measures, pass@k on never-inverted targets (practice phrasing),
    the judge on its own distinct samples, and synthesis.

    judge: [(instruction, input, response)] -> [score or None] (the loop's judge); default
    judge_scores, greedy with the quality prompt."""
    record = {"heldout": heldout_measures(llm)}
    tasks = [WorldTask(f, t) for f, t in targets_in("practised") + targets_in("kept_out")]
    samples = sample_answers(llm, tasks, pass_k, seed)
    record["samples"] = {"k": pass_k, "pass_at_k": pass_at_k(tasks, samples),
                         "sample_accuracy": group_accuracy(
                             (t.family, FAMILIES[t.family].check(t.target, s).right)
                             for t, ss in zip(tasks, samples) for s in ss)}
    pairs = distinct_pairs(tasks, samples)
    triples = [(t.instruction, "", a) for t, a in pairs]
    if judge is None:
        scores, texts = judge_scores(llm, triples)
        record["judge_examples"] = [{"instruction": t.instruction, "response": a, "judge": x}
                                    for (t, a), x in list(zip(pairs, texts))[:6]]
    else:
        scores = judge(triples)
    record["judge_own_samples"] = judge_on_samples(tasks, samples, scores, threshold)
    record["synthesis"] = synthesis_measures(llm, 24, seed)
    return record
