"""The data stages of one I-SHEEP iteration, each resumable from the run directory.

prompts -> responses -> assessed -> train data -> model. Every generation request gets a
seed derived from (run seed, iteration, stage, record), so a resumed stage draws exactly
what an uninterrupted one would have: nothing is lost, duplicated or different.
"""
from __future__ import annotations

import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.files import replace_dir
from engine.selfalign.judging import (KINDS_BY_LEVEL, deciding_scores, lowest_score, request_seed,
                                      score_pairs)
from engine.selfalign.progress import stage_bar
from engine.selfalign.records import append_jsonl, atomic_write_jsonl, read_jsonl, record_id
from engine.selfalign.response_filters import clean_response, filter_response
from engine.selfalign.rouge import NoveltyFilter
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.seeds import SeedTask, load_default_seeds, read_seed_tasks
from engine.selfalign.selection import passes, select_training_data
from engine.selfalign.settings import IsheepConfig
from engine.selfalign.synthesis import (build_meta_prompt, filter_prompt, list_end_stop,
                                        parse_generated_tasks)


@dataclass
class IterationContext:
    cfg: IsheepConfig
    run: RunDirectory
    iteration: int
    base_dir: Path            # M_0
    generator_dir: Path       # M_{i-1}: writes prompts and answers
    llm_for: Callable         # model dir -> engine.LLM (the loop keeps one loaded at a time)
    barrier: Callable = lambda: None
    progress: Callable = lambda label, total: stage_bar(label, total, False)   # -> .update(n), .close()

    def judge_dir(self) -> Path:
        return self.base_dir if self.cfg.assessment.judge == "base" else self.generator_dir

    def is_base(self, model_dir: Path) -> bool:
        return Path(model_dir).resolve() == Path(self.base_dir).resolve()

    def use_chat(self, setting: str, model_dir: Path) -> bool:
        """auto: the base model gets raw text, fine-tuned models their chat template."""
        return setting == "chat" or (setting == "auto" and not self.is_base(model_dir))

    def answer_prompt(self, instruction: str, input: str, model_dir: Path) -> str:
        """What the response stage sends model_dir for this task."""
        from engine.prompt_format import chat_prompt, raw_prompt, user_content

        layout = self.cfg.response.layout
        if not self.use_chat(self.cfg.response.template, model_dir):
            return raw_prompt(instruction, input, layout)
        return chat_prompt(self.llm_for(model_dir).tokenizer, user_content(instruction, input, layout),
                           layout)

    def judge_scores(self, pairs: list[dict], judge_dir: Path | None = None,
                     seed_parts: tuple = ()) -> dict[str, dict]:
        """score_pairs with this run's assessment settings and judge."""
        a = self.cfg.assessment
        if not KINDS_BY_LEVEL[a.level]:
            return {p["id"]: {} for p in pairs}
        if a.judge == "oracle":
            return score_pairs(pairs, a, oracle=self.oracle)
        judge_dir = judge_dir or self.judge_dir()
        return score_pairs(pairs, a, llm=self.llm_for(judge_dir), chat=self.use_chat(a.template, judge_dir),
                           seed_parts=seed_parts or (self.cfg.run.seed, self.iteration, "judge"))

    def oracle(self, pairs: list[dict]) -> list:
        for ext in self.cfg.extensions:
            scores = ext.oracle_scores(pairs)
            if scores is not None:
                return scores
        raise RuntimeError("assessment.judge = 'oracle' but no extension has a checker")


def load_seeds(cfg: IsheepConfig) -> list[SeedTask]:
    return read_seed_tasks(cfg.synthesis.seeds_file) if cfg.synthesis.seeds_file else load_default_seeds()


def _chunks(items: list, size: int):
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + size]


def _finish(ctx: IterationContext, name: str, records: list[dict]) -> None:
    """Rename the stage's output into place; the partial file is no longer needed."""
    if ctx.run.is_writer:
        atomic_write_jsonl(ctx.run.path(ctx.iteration, name), records)
        ctx.run.partial(ctx.iteration, name).unlink(missing_ok=True)
    ctx.barrier()


def _read_partial(ctx: IterationContext, name: str) -> list[dict]:
    path = ctx.run.partial(ctx.iteration, name)
    return read_jsonl(path) if path.is_file() else []


def _save_chunk(ctx: IterationContext, name: str, done: dict, new: list[dict]) -> None:
    """Add a finished chunk to `done` (by id) and to the stage's partial file, so that a
    killed run resumes after it."""
    for rec in new:
        done[rec["id"]] = rec
    if ctx.run.is_writer:
        append_jsonl(ctx.run.partial(ctx.iteration, name), new)
    ctx.run.fault_point(ctx.iteration, name)


# --- 1-3. prompt synthesis, heuristic filters, novelty filter ------------------------------
def synthesize_prompts(ctx: IterationContext) -> dict:
    if ctx.cfg.synthesis.prompts_from:
        return _reuse_prompts(ctx)
    from engine.generation import SamplingParams

    s, it = ctx.cfg.synthesis, ctx.iteration
    seeds = load_seeds(ctx.cfg)
    run_pool = [t.instruction for t in seeds]
    if s.novelty_pool == "run":     # the seeds and every prompt kept so far in the run
        for prev in range(1, it):
            run_pool += [r["instruction"] for r in ctx.run.read(prev, "prompts.jsonl")]
    novelty = NoveltyFilter(run_pool, threshold=s.rouge_threshold)
    # each finished round is one line, so a torn write loses at most the round in flight
    rounds = _read_partial(ctx, "prompts.jsonl")
    kept: list[dict] = []
    for rnd in rounds:
        for task in rnd["tasks"]:
            if task["drop"] is None:
                if s.novelty_pool == "run":
                    novelty.add([task["instruction"]])
                kept.append(task)
    stop = s.stop or list_end_stop()
    bar = ctx.progress("prompts", s.num_prompts)
    bar.update(min(len(kept), s.num_prompts))
    for r in range(len(rounds), s.max_rounds):
        if len(kept) >= s.num_prompts:
            break
        llm = ctx.llm_for(ctx.generator_dir)
        rng = random.Random(request_seed(ctx.cfg.run.seed, it, "synthesis", r))
        metas = [build_meta_prompt(seeds, rng, num_examples=s.tasks_per_meta_prompt,
                                   output_requirement=s.output_requirement)
                 for _ in range(s.meta_prompts_per_round)]
        params = [SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                 stop=stop, seed=request_seed(ctx.cfg.run.seed, it, "synthesis", r, j))
                  for j in range(len(metas))]
        outs = llm.generate(metas, params, use_tqdm=False)
        tasks = []
        for out in outs:
            parsed = parse_generated_tasks(out.text, s.tasks_per_meta_prompt, out.finish_reason,
                                           drop_last=s.drop_last, drop_output_items=s.drop_output_items,
                                           split=s.prompt_rules)
            for p in parsed:
                tasks.append({"instruction": p.instruction.strip(), "input": p.input.strip(),
                              "drop": _prompt_drop_reason(ctx.cfg, p)})
        if s.novelty_pool == "call":    # the release: seeds + what this call kept
            novelty = NoveltyFilter([t.instruction for t in seeds], threshold=s.rouge_threshold)
        survivors = [t for t in tasks if t["drop"] is None]
        for t, res in zip(survivors, novelty.add_many_if_novel([t["instruction"] for t in survivors])):
            t["rouge"] = round(res.max_score, 4)
            if not res.kept:
                t["drop"] = "similar"
        new_kept = [t for t in tasks if t["drop"] is None]
        bar.update(min(len(new_kept), max(0, s.num_prompts - len(kept))), llm)   # up to the cap
        kept += new_kept
        round_record = {"id": f"round-{r:04d}", "generated": len(outs), "tasks": tasks}
        rounds.append(round_record)
        if ctx.run.is_writer:
            append_jsonl(ctx.run.partial(it, "prompts.jsonl"), [round_record])
        ctx.run.fault_point(it, "prompts.jsonl")
    bar.close()
    final = [{"id": record_id(it, k), "instruction": t["instruction"], "input": t["input"]}
             for k, t in enumerate(kept[:s.num_prompts])]
    _finish(ctx, "prompts.jsonl", final)
    drops = Counter(t["drop"] for rnd in rounds for t in rnd["tasks"] if t["drop"])
    counts = {"meta_prompts": sum(rnd["generated"] for rnd in rounds), "rounds": len(rounds),
              "parsed": sum(len(rnd["tasks"]) for rnd in rounds), "dropped": dict(drops),
              "novel": len(kept), "over_cap": max(0, len(kept) - s.num_prompts), "kept": len(final)}
    for ext in ctx.cfg.extensions:
        described = ext.describe_prompts(final)
        if described:
            counts[ext.name] = described
    return counts


def _reuse_prompts(ctx: IterationContext) -> dict:
    """A control arm answers the main arm's own prompts of the same iteration."""
    src = Path(ctx.cfg.synthesis.prompts_from) / f"iter_{ctx.iteration:02d}" / "prompts.jsonl"
    if not src.is_file():
        raise FileNotFoundError(f"synthesis.prompts_from: {src} does not exist (run the main arm "
                                "of this iteration first)")
    prompts = read_jsonl(src)
    _finish(ctx, "prompts.jsonl", prompts)
    return {"meta_prompts": 0, "parsed": len(prompts), "dropped": {}, "kept": len(prompts),
            "reused_from": str(src)}


def _prompt_drop_reason(cfg: IsheepConfig, task) -> str | None:
    if not task.instruction.strip():
        return "empty"
    reason = filter_prompt(task, rules=cfg.synthesis.prompt_rules)
    if reason:
        return reason
    for ext in cfg.extensions:
        reason = ext.filter_prompt(task.instruction.strip(), task.input.strip())
        if reason:
            return f"{ext.name}:{reason}"
    return None


# --- 4-5. responses and rule filters --------------------------------------------------------
def generate_responses(ctx: IterationContext) -> dict:
    from engine.generation import SamplingParams

    r, it = ctx.cfg.response, ctx.iteration
    prompts = ctx.run.read(it, "prompts.jsonl")
    answered: dict[str, list[dict]] = {}
    for rec in _read_partial(ctx, "responses.jsonl"):
        answered.setdefault(rec["prompt_id"], []).append(rec)
    # a chunk torn by a kill may hold part of a prompt's samples: answer that prompt again
    answered = {k: v for k, v in answered.items() if len(v) == r.n}
    todo = [p for p in prompts if p["id"] not in answered]
    bar = ctx.progress("responses", len(prompts))
    bar.update(len(prompts) - len(todo))
    for chunk in _chunks(todo, ctx.cfg.generation.chunk_size):
        llm = ctx.llm_for(ctx.generator_dir)
        texts = [ctx.answer_prompt(p["instruction"], p["input"], ctx.generator_dir) for p in chunk]
        params = [SamplingParams(temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens,
                                 n=r.n, seed=request_seed(ctx.cfg.run.seed, it, "response", p["id"]))
                  for p in chunk]
        outs = llm.generate(texts, params, use_tqdm=False)
        new = []
        for p, out in zip(chunk, outs):
            recs = _answer_records(ctx, p, out.outputs)
            answered[p["id"]] = recs
            new += recs
        if ctx.run.is_writer:
            append_jsonl(ctx.run.partial(it, "responses.jsonl"), new)
        ctx.run.fault_point(it, "responses.jsonl")
        bar.update(len(chunk), llm)
    bar.close()
    records = [rec for p in prompts for rec in answered[p["id"]]]
    _finish(ctx, "responses.jsonl", records)
    drops = Counter(rec["drop"] for rec in records if rec["drop"])
    return {"prompts": len(prompts), "answers": len(records), "dropped": dict(drops),
            "kept": sum(rec["drop"] is None for rec in records),
            "truncated": sum(rec["finish_reason"] == "length" for rec in records)}


def _answer_records(ctx: IterationContext, prompt: dict, samples) -> list[dict]:
    """One record per sample; a repeat of an earlier sample's answer is dropped as such."""
    r = ctx.cfg.response
    seen: set[str] = set()
    recs = []
    for j, sample in enumerate(samples):
        response = clean_response(sample.text, rules=r.rules)
        reason = filter_response(_task_text(prompt), response, rules=r.rules)
        if reason is None and r.pair_rules == "reference":
            from engine.selfalign.pair_filters import filter_pair
            reason = filter_pair(prompt["instruction"], prompt["input"], response, rules="reference")
        if reason is None and response in seen:
            reason = "duplicate"
        seen.add(response)
        rid = prompt["id"] if r.n == 1 else f"{prompt['id']}-s{j:02d}"
        recs.append({"id": rid, "prompt_id": prompt["id"], "instruction": prompt["instruction"],
                     "input": prompt["input"], "response": response,
                     "finish_reason": sample.finish_reason, "drop": reason})
    return recs


def _task_text(rec: dict) -> str:
    return f"{rec['instruction']}\n{rec['input']}" if rec.get("input") else rec["instruction"]


# --- 6-7. self-assessment and threshold -----------------------------------------------------
def assess_pairs(ctx: IterationContext) -> dict:
    a, it = ctx.cfg.assessment, ctx.iteration
    pairs = [rec for rec in ctx.run.read(it, "responses.jsonl") if rec["drop"] is None]
    done = {rec["id"]: rec for rec in _read_partial(ctx, "assessed.jsonl")}
    todo = [p for p in pairs if p["id"] not in done]
    bar = ctx.progress("assessment", len(pairs))
    bar.update(len(pairs) - len(todo))
    for chunk in _chunks(todo, ctx.cfg.generation.chunk_size):
        scored = ctx.judge_scores(chunk)
        new = []
        for p in chunk:
            rec = {"id": p["id"], "prompt_id": p.get("prompt_id", p["id"]),
                   "instruction": p["instruction"], "input": p["input"], "response": p["response"],
                   **scored[p["id"]]}
            rec["keep"] = passes(deciding_scores(rec), a.level, a.threshold)
            if a.mode == "both":
                rec["keep_logprob"] = passes(rec["logprob_scores"], a.level, a.threshold)
            new.append(rec)
        _save_chunk(ctx, "assessed.jsonl", done, new)
        bar.update(len(chunk), None if a.judge == "oracle" or not KINDS_BY_LEVEL[a.level]
                   else ctx.llm_for(ctx.judge_dir()))
    bar.close()
    records = [done[p["id"]] for p in pairs]
    _finish(ctx, "assessed.jsonl", records)
    counts = {"pairs": len(records), "kept": sum(rec["keep"] for rec in records)}
    if KINDS_BY_LEVEL[a.level] and "scores" in (records[0] if records else {}):
        counts["unparsed"] = sum(v is None for rec in records for v in rec["scores"].values())
        counts["unparsed_pairs"] = sum(any(v is None for v in rec["scores"].values()) for rec in records)
    if a.mode == "both":
        counts["kept_logprob"] = sum(rec["keep_logprob"] for rec in records)
        counts["agree"] = sum(rec["keep"] == rec["keep_logprob"] for rec in records)
    return counts


# --- 8. SFT data and fine-tuning -------------------------------------------------------------
def select_data(ctx: IterationContext) -> dict:
    t = ctx.cfg.training
    by_iter = {}
    iterations = range(1, ctx.iteration + 1) if t.data == "cumulative" else [ctx.iteration]
    capped = 0
    for i in iterations:
        kept = [r for r in ctx.run.read(i, "assessed.jsonl") if r["keep"]]
        if t.max_per_prompt:
            kept, dropped = cap_per_prompt(kept, t.max_per_prompt)
            capped += dropped
        by_iter[i] = [{"id": r["id"], "instruction": r["instruction"], "input": r["input"],
                       "output": r["response"]} for r in kept]
    data = select_training_data(by_iter, t.data)
    _finish(ctx, "train.jsonl", data)
    return {"examples": len(data), "mode": t.data, "over_prompt_cap": capped}


def cap_per_prompt(kept: list[dict], cap: int) -> tuple[list[dict], int]:
    """At most `cap` kept pairs per prompt: the best-scored first (ties: sample order).
    Returns the kept records in their original order, and how many the cap removed."""
    by_prompt: dict[str, list[tuple[int, dict]]] = {}
    for k, rec in enumerate(kept):
        by_prompt.setdefault(rec.get("prompt_id", rec["id"]), []).append((k, rec))
    chosen: set[int] = set()
    for group in by_prompt.values():
        ranked = sorted(group, key=lambda kr: (-(lowest_score(deciding_scores(kr[1])) or 0), kr[0]))
        chosen |= {k for k, _ in ranked[:cap]}
    return [rec for k, rec in enumerate(kept) if k in chosen], len(kept) - len(chosen)


def finetune(ctx: IterationContext, start_dir: Path) -> dict:
    from engine.training import TrainConfig, train
    from engine.training.config import hyperparams_of

    t, it = ctx.cfg.training, ctx.iteration
    model_dir = ctx.run.model_dir(it)
    data_path = ctx.run.path(it, "train.jsonl")
    n = len(read_jsonl(data_path))
    if n < max(1, t.min_examples):
        # nothing worth training on: M_i is its start model, said plainly in the counts
        if ctx.run.is_writer:
            _copy_model(start_dir, model_dir)
        ctx.barrier()
        return {"examples": n, "trained": False, "start": str(start_dir)}
    cfg = TrainConfig(model=str(start_dir), data=[str(data_path)], output=str(ctx.run.path(it, "train")),
                      lora=t.method == "lora", layout=ctx.cfg.response.layout, resume=True,
                      seed=ctx.cfg.run.seed + it,
                      device=ctx.cfg.run.device, progress=False, **hyperparams_of(t))
    result = train(cfg)
    if ctx.run.is_writer:   # one copy of the model: the export moves into place
        replace_dir(result.model_dir, model_dir)
    ctx.barrier()
    losses = list(result.losses)
    return {"examples": n, "trained": True, "start": str(start_dir), "steps": len(losses),
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "losses": losses}


def _copy_model(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "*.jsonl"))
    replace_dir(tmp, dst)
