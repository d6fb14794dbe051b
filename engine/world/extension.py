"""The toy world as a loop extension: `run.extensions = ["engine.world.extension"]`.

  filter_prompt      drops synthesized tasks that are not world tasks, ask about a number
                     that is no target, use the held-out phrasing, or (keep_out) ask about a
                     kept-out target
  describe_prompts   the family mix of the kept prompts
  oracle_scores      the checker as a perfect judge: 10 right, 1 wrong, None if no world task
  measure_model      held-out greedy accuracy (practised and kept-out targets, heldout phrasing)
                     with stderr and per family; taught targets; forward facts
  measure_iteration  the iteration's own files: answered vs kept correctness, the judge's
                     precision and recall on its own pairs, the family mix
  summary_lines / report_section   engine.world.report
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from engine.selfalign.extension import ExtensionContext, LoopExtension
from engine.world import report
from engine.world.families import FAMILIES
from engine.world.measure import group_accuracy, judge_quality
from engine.world.model_measures import heldout_measures, measure_base_model
from engine.world.tasks import parse_task
from engine.world.corpus import RIGHT_SCORE, WRONG_SCORE


@dataclass
class WorldSettings:
    """The [world] config section."""
    keep_out: bool = True      # drop synthesized tasks about kept-out targets
    base_pass_k: int = 0       # > 0: M_0's record also gets pass@k and its judge on own samples
    seed: int = 0              # sampling seed of those M_0 measures


class WorldExtension(LoopExtension):
    name = "world"
    settings_class = WorldSettings

    def filter_prompt(self, instruction: str, input: str) -> str | None:
        task = parse_task(instruction, input)
        if isinstance(task, str):
            return task
        if task.phrasing == "heldout":
            return "held-out phrasing"
        if task.group == "kept_out" and self.settings.keep_out:
            return "kept-out target"
        return None

    def describe_prompts(self, prompts: list[dict]) -> dict:
        mix = Counter()
        for p in prompts:
            task = parse_task(p["instruction"], p.get("input", ""))
            mix["other" if isinstance(task, str) else f"{task.family} {task.group}"] += 1
        return {"family_mix": dict(sorted(mix.items()))}

    def oracle_scores(self, pairs: list[dict]) -> list[float | None]:
        scores = []
        for p in pairs:
            right = _right(p["instruction"], p.get("input", ""), p["response"])
            scores.append(None if right is None else float(RIGHT_SCORE if right else WRONG_SCORE))
        return scores

    def measure_model(self, ctx: ExtensionContext, model_dir: Path) -> dict:
        llm = ctx.llm_for(model_dir)
        measures = heldout_measures(llm, lambda instruction: ctx.answer_prompt(instruction, "", model_dir))
        out = {"heldout": {k: measures[k] for k in ("practised", "unseen", "taught")},
               "practised_practice_phrasing": measures["practised_practice_phrasing"],
               "forward": measures["forward"]}
        if ctx.iteration == 0 and self.settings.base_pass_k > 0:
            base = measure_base_model(llm, self.settings.seed, self.settings.base_pass_k,
                                      threshold=ctx.cfg.assessment.threshold,
                                      judge=lambda triples: ctx.judge(ctx.base_dir, triples))
            out["base"] = {k: base[k] for k in ("samples", "judge_own_samples", "synthesis")}
        return out

    def measure_iteration(self, ctx: ExtensionContext) -> dict:
        it = ctx.iteration
        prompts = ctx.run.read(it, "prompts.jsonl")
        answered = [r for r in ctx.run.read(it, "responses.jsonl") if r.get("drop") is None]
        assessed = ctx.run.read(it, "assessed.jsonl")
        trained = ctx.run.read(it, "train.jsonl")
        return {"prompts": self.describe_prompts(prompts)["family_mix"],
                "answered": _checked(answered, "response"),
                "kept": _checked(trained, "output"),
                "judge": _judge(assessed),
                "kept_targets": _targets_with_right_pair(trained)}

    def summary_lines(self, results: dict[str, dict[int, dict]]) -> list[str]:
        return report.summary_lines(results)

    def report_section(self, results: dict[str, dict[int, dict]], plots_dir: Path) -> list[str]:
        return report.report_section(results, plots_dir)


def _right(instruction: str, input: str, response: str) -> bool | None:
    task = parse_task(instruction, input)
    if isinstance(task, str):
        return None
    return FAMILIES[task.family].check(task.target, response).right


def _checked(records: list[dict], answer_key: str) -> dict:
    """group_accuracy of the world-task records (others are counted as "not_world")."""
    items, other = [], 0
    for r in records:
        task = parse_task(r["instruction"], r.get("input", ""))
        if isinstance(task, str):
            other += 1
            continue
        items.append((task.family, FAMILIES[task.family].check(task.target, r[answer_key]).right))
    return {**group_accuracy(items), "not_world": other}


def _judge(assessed: list[dict]) -> dict:
    """The judge's keep decisions on its own world pairs against the checker."""
    right, kept, unparsed = [], [], 0
    for r in assessed:
        truth = _right(r["instruction"], r.get("input", ""), r["response"])
        if truth is None:
            continue
        right.append(truth)
        kept.append(bool(r["keep"]))
        unparsed += any(v is None for v in r.get("scores", {}).values())
    return {**judge_quality(right, kept), "unparsed": unparsed}


def _targets_with_right_pair(trained: list[dict]) -> dict:
    """How many distinct targets of each group got at least one right training pair."""
    found = set()
    for r in trained:
        task = parse_task(r["instruction"], r.get("input", ""))
        if not isinstance(task, str) and FAMILIES[task.family].check(task.target, r["output"]).right:
            found.add((task.family, task.target, task.group))
    return dict(sorted(Counter(g for _, _, g in found).items()))


EXTENSION = WorldExtension()
