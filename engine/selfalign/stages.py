"""The stages of one I-SHEEP iteration, each resumable from the run directory.

prompts -> responses -> assessed -> train data -> model -> eval. Every generation request
gets a seed derived from (run seed, iteration, stage, record), so a resumed stage draws
exactly what an uninterrupted one would have: nothing is lost, duplicated or different.
"""
from __future__ import annotations

import hashlib
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.selfalign.assessment_prompts import build_assessment_prompt, score_continuations
from engine.selfalign.records import append_jsonl, atomic_write_jsonl, read_jsonl, record_id
from engine.selfalign.response_filters import clean_response, filter_response
from engine.selfalign.rouge import NoveltyFilter
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.scores import expected_score, parse_score
from engine.selfalign.seeds import SeedTask, load_default_seeds, read_seed_tasks
from engine.selfalign.selection import passes, select_training_data
from engine.selfalign.settings import IsheepConfig
from engine.selfalign.synthesis import ParsedTask, build_meta_prompt, filter_prompt, parse_generated_tasks

KINDS_BY_LEVEL = {"none": (), "quality": ("quality",), "following": ("following",),
                  "both": ("quality", "following")}


def request_seed(*parts) -> int:
    """A stable 31-bit seed from any parts (not Python's salted hash)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class IterationContext:
    cfg: IsheepConfig
    run: RunDirectory
    iteration: int
    base_dir: Path            # M_0
    generator_dir: Path       # M_{i-1}: writes prompts and answers
    llm_for: Callable         # model dir -> engine.LLM (the loop keeps one loaded at a time)
    barrier: Callable = lambda: None

    def judge_dir(self) -> Path:
        return self.base_dir if self.cfg.assessment.judge == "base" else self.generator_dir

    def is_base(self, model_dir: Path) -> bool:
        return Path(model_dir).resolve() == Path(self.base_dir).resolve()

    def use_chat(self, setting: str, model_dir: Path) -> bool:
        """auto: the base model gets raw text, fine-tuned models their chat template."""
        return setting == "chat" or (setting == "auto" and not self.is_base(model_dir))


def format_prompt(llm, instruction: str, input: str, chat: bool) -> str:
    from engine.training.data import format_raw_prompt

    if not chat:
        return format_raw_prompt(instruction, input)
    content = f"{instruction}\n\n{input}" if input.strip() else instruction
    return llm.tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                             add_generation_prompt=True)


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


# --- 1-3. prompt synthesis, heuristic filters, global novelty filter -----------------------
def synthesize_prompts(ctx: IterationContext) -> dict:
    from engine.generation import SamplingParams

    s, it = ctx.cfg.synthesis, ctx.iteration
    seeds = load_seeds(ctx.cfg)
    # one global pool: the seeds and every prompt kept so far, earlier iterations included
    pool = [t.instruction for t in seeds]
    for prev in range(1, it):
        pool += [r["instruction"] for r in ctx.run.read(prev, "prompts.jsonl")]
    novelty = NoveltyFilter(pool, threshold=s.rouge_threshold)
    # each finished round is one line, so a torn write loses at most the round in flight
    rounds = _read_partial(ctx, "prompts.jsonl")
    kept: list[dict] = []
    for rnd in rounds:
        for task in rnd["tasks"]:
            if task["drop"] is None:
                novelty.add([task["instruction"]])
                kept.append(task)
    llm = None
    for r in range(len(rounds), s.max_rounds):
        if len(kept) >= s.num_prompts:
            break
        llm = llm or ctx.llm_for(ctx.generator_dir)
        rng = random.Random(request_seed(ctx.cfg.run.seed, it, "synthesis", r))
        metas = [build_meta_prompt(seeds, rng, num_examples=s.tasks_per_meta_prompt)
                 for _ in range(s.meta_prompts_per_round)]
        params = [SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                 stop=["\n20."], seed=request_seed(ctx.cfg.run.seed, it, "synthesis", r, j))
                  for j in range(len(metas))]
        outs = llm.generate(metas, params, use_tqdm=False)
        tasks = []
        for out in outs:
            parsed = parse_generated_tasks(out.text, s.tasks_per_meta_prompt, out.finish_reason)
            if s.relax_filters and not parsed and out.text.strip():
                # a random model writes no numbered list: keep its text as one instruction
                parsed = [ParsedTask(instruction=" ".join(out.text.split()[:60]), input="")]
            for p in parsed:
                reason = _prompt_drop_reason(p, s.relax_filters, _world_split(ctx.cfg))
                tasks.append({"instruction": p.instruction.strip(), "input": p.input.strip(), "drop": reason})
        survivors = [t for t in tasks if t["drop"] is None]
        for t, res in zip(survivors, novelty.add_many_if_novel([t["instruction"] for t in survivors])):
            t["rouge"] = round(res.max_score, 4)
            if not res.kept:
                t["drop"] = "similar"
        kept += [t for t in tasks if t["drop"] is None]
        round_record = {"id": f"round-{r:04d}", "generated": len(outs), "tasks": tasks}
        rounds.append(round_record)
        if ctx.run.is_writer:
            append_jsonl(ctx.run.partial(it, "prompts.jsonl"), [round_record])
    final = [{"id": record_id(it, k), "instruction": t["instruction"], "input": t["input"]}
             for k, t in enumerate(kept[:s.num_prompts])]
    _finish(ctx, "prompts.jsonl", final)
    drops = Counter(t["drop"] for rnd in rounds for t in rnd["tasks"] if t["drop"])
    return {"meta_prompts": sum(rnd["generated"] for rnd in rounds), "rounds": len(rounds),
            "parsed": sum(len(rnd["tasks"]) for rnd in rounds), "dropped": dict(drops),
            "novel": len(kept), "kept": len(final)}


def _world_split(cfg: IsheepConfig):
    """The toy world's held-out test (instruction, input) -> bool, when it must be applied."""
    if not (cfg.world.enabled and cfg.world.exclude_heldout):
        return None
    from engine.world.tasks import is_held_out
    return is_held_out


def _prompt_drop_reason(task: ParsedTask, relaxed: bool, held_out=None) -> str | None:
    if not task.instruction.strip():
        return "empty"
    if held_out is not None and held_out(task.instruction.strip(), task.input.strip()):
        return "heldout"
    return None if relaxed else filter_prompt(task)


# --- 4-5. responses and rule filters --------------------------------------------------------
def generate_responses(ctx: IterationContext) -> dict:
    from engine.generation import SamplingParams

    r, it = ctx.cfg.response, ctx.iteration
    prompts = ctx.run.read(it, "prompts.jsonl")
    done = {rec["id"]: rec for rec in _read_partial(ctx, "responses.jsonl")}
    todo = [p for p in prompts if p["id"] not in done]
    chat = ctx.use_chat(r.template, ctx.generator_dir)
    for chunk in _chunks(todo, ctx.cfg.generation.chunk_size):
        llm = ctx.llm_for(ctx.generator_dir)
        texts = [format_prompt(llm, p["instruction"], p["input"], chat) for p in chunk]
        params = [SamplingParams(temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens,
                                 seed=request_seed(ctx.cfg.run.seed, it, "response", p["id"]))
                  for p in chunk]
        outs = llm.generate(texts, params, use_tqdm=False)
        new = []
        for p, out in zip(chunk, outs):
            response = clean_response(out.text)
            if r.relax_filters:
                reason = None if response.strip() else "empty"
            else:
                reason = filter_response(_task_text(p), response)
            new.append({**p, "response": response, "finish_reason": out.finish_reason, "drop": reason})
        _save_chunk(ctx, "responses.jsonl", done, new)
    records = [done[p["id"]] for p in prompts]
    _finish(ctx, "responses.jsonl", records)
    drops = Counter(rec["drop"] for rec in records if rec["drop"])
    return {"prompts": len(prompts), "dropped": dict(drops),
            "kept": sum(rec["drop"] is None for rec in records),
            "truncated": sum(rec["finish_reason"] == "length" for rec in records)}


def _task_text(rec: dict) -> str:
    return f"{rec['instruction']}\n{rec['input']}" if rec.get("input") else rec["instruction"]


# --- 6-7. self-assessment and threshold -----------------------------------------------------
def assess_pairs(ctx: IterationContext) -> dict:
    a, it = ctx.cfg.assessment, ctx.iteration
    pairs = [rec for rec in ctx.run.read(it, "responses.jsonl") if rec["drop"] is None]
    kinds = KINDS_BY_LEVEL[a.level]
    done = {rec["id"]: rec for rec in _read_partial(ctx, "assessed.jsonl")}
    todo = [p for p in pairs if p["id"] not in done]
    for chunk in _chunks(todo, ctx.cfg.generation.chunk_size):
        sampled = logprob = {}
        if kinds:
            llm = ctx.llm_for(ctx.judge_dir())
            chat = ctx.use_chat(a.template, ctx.judge_dir())
            prompts = {(p["id"], k): _judge_prompt(llm, k, p, chat) for p in chunk for k in kinds}
            if a.mode in ("sample", "both"):
                sampled = _sampled_scores(ctx, llm, prompts)
            if a.mode in ("logprob", "both"):
                logprob = _logprob_scores(llm, prompts)
        new = []
        for p in chunk:
            rec = {"id": p["id"], "instruction": p["instruction"], "input": p["input"],
                   "response": p["response"]}
            if a.mode in ("sample", "both"):
                rec["judge_text"] = {k: sampled[(p["id"], k)][1] for k in kinds}
                rec["scores"] = {k: sampled[(p["id"], k)][0] for k in kinds}
            if a.mode in ("logprob", "both"):
                rec["logprob_scores"] = {k: logprob[(p["id"], k)] for k in kinds}
            # the sampled-and-parsed score decides when both run: it is the reference rule
            deciding = rec.get("scores", rec.get("logprob_scores", {}))
            rec["keep"] = passes(deciding, a.level, a.threshold)
            if a.mode == "both":
                rec["keep_logprob"] = passes(rec["logprob_scores"], a.level, a.threshold)
            new.append(rec)
        _save_chunk(ctx, "assessed.jsonl", done, new)
    records = [done[p["id"]] for p in pairs]
    _finish(ctx, "assessed.jsonl", records)
    counts = {"pairs": len(records), "kept": sum(rec["keep"] for rec in records)}
    if "scores" in (records[0] if records else {}):
        counts["unparsed"] = sum(v is None for rec in records for v in rec["scores"].values())
    if a.mode == "both":
        counts["kept_logprob"] = sum(rec["keep_logprob"] for rec in records)
        counts["agree"] = sum(rec["keep"] == rec["keep_logprob"] for rec in records)
    return counts


def _judge_prompt(llm, kind: str, pair: dict, chat: bool) -> str:
    text = build_assessment_prompt(kind, pair["instruction"], pair["input"], pair["response"])
    if chat:
        return llm.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 add_generation_prompt=True)
    return text


def _sampled_scores(ctx: IterationContext, llm, prompts: dict) -> dict:
    from engine.generation import SamplingParams

    a = ctx.cfg.assessment
    keys = list(prompts)
    params = [SamplingParams(temperature=a.temperature, top_p=1.0, max_tokens=a.max_tokens,
                             seed=request_seed(ctx.cfg.run.seed, ctx.iteration, "judge", *key))
              for key in keys]
    outs = llm.generate([prompts[k] for k in keys], params, use_tqdm=False)
    return {k: (parse_score(o.text), o.text) for k, o in zip(keys, outs)}


def _logprob_scores(llm, prompts: dict) -> dict:
    """Expected score under the judge's distribution over "1||" .. "10||" (one prefill each)."""
    conts = score_continuations()
    keys = list(prompts)
    flat_prompts = [prompts[k] for k in keys for _ in conts]
    flat_conts = [c for _ in keys for c in conts.values()]
    scored = llm.score(flat_prompts, flat_conts)
    out = {}
    for i, k in enumerate(keys):
        row = scored[i * len(conts):(i + 1) * len(conts)]
        out[k] = round(expected_score({n: s.logprob for n, s in zip(conts, row)}), 4)
    return out


# --- 8. SFT data and fine-tuning -------------------------------------------------------------
def select_data(ctx: IterationContext) -> dict:
    by_iter = {}
    iterations = range(1, ctx.iteration + 1) if ctx.cfg.training.data == "cumulative" else [ctx.iteration]
    for i in iterations:
        by_iter[i] = [{"id": r["id"], "instruction": r["instruction"], "input": r["input"],
                       "output": r["response"]} for r in ctx.run.read(i, "assessed.jsonl") if r["keep"]]
    data = select_training_data(by_iter, ctx.cfg.training.data)
    _finish(ctx, "train.jsonl", data)
    return {"examples": len(data), "mode": ctx.cfg.training.data}


def finetune(ctx: IterationContext, start_dir: Path) -> dict:
    from engine.training import TrainConfig, train

    t, it = ctx.cfg.training, ctx.iteration
    model_dir = ctx.run.model_dir(it)
    data_path = ctx.run.path(it, "train.jsonl")
    n = len(read_jsonl(data_path))
    if n < t.min_examples:
        # nothing worth training on: M_i is its start model, said plainly in the counts
        if ctx.run.is_writer:
            _copy_model(start_dir, model_dir)
        ctx.barrier()
        return {"examples": n, "trained": False, "start": str(start_dir)}
    overrides = dict(t.overrides)
    overrides.setdefault("prompt_format", "chat")
    overrides.setdefault("seed", ctx.cfg.run.seed + it)
    overrides.setdefault("progress", False)
    cfg = TrainConfig(model=str(start_dir), data=[str(data_path)], output=str(ctx.run.path(it, "train")),
                      lora=t.method == "lora", resume=True, **overrides)
    result = train(cfg)
    if ctx.run.is_writer:
        _copy_model(Path(result.model_dir), model_dir)
    ctx.barrier()
    losses = list(result.losses)
    return {"examples": n, "trained": True, "start": str(start_dir), "steps": len(losses),
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "losses": losses}


def _copy_model(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "*.jsonl"))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


# --- 9. evaluation ---------------------------------------------------------------------------
def evaluate_iteration(ctx: IterationContext, model_dir: Path, reference_dir: Path | None) -> dict:
    """IFEval-style checks of M_i and, against M_{i-1}, a judged win rate (judge: M_0).

    One model is loaded at a time: answers are generated per model, then judged.
    """
    from engine.eval.evaluate import generate_answers
    from engine.eval.ifeval import read_ifeval_data, score_ifeval
    from engine.eval.judge import compare_answers, make_judge, read_judge_prompts

    e = ctx.cfg.eval
    data = read_ifeval_data(e.ifeval_data or None)
    if e.max_prompts:
        data = data[:e.max_prompts]
    llm = ctx.llm_for(model_dir)
    chat = not ctx.is_base(model_dir)
    answers = generate_answers(llm, [d.prompt for d in data], max_tokens=e.max_tokens, use_chat_template=chat)
    metrics, _ = score_ifeval(data, answers)
    metrics.pop("inst_strict_acc_by_id", None)
    if e.pairwise and reference_dir is not None:
        instructions = read_judge_prompts(None)
        if e.max_prompts:
            instructions = instructions[:e.max_prompts]
        ours = generate_answers(llm, instructions, max_tokens=e.max_tokens, use_chat_template=chat)
        ref_llm = ctx.llm_for(reference_dir)
        theirs = generate_answers(ref_llm, instructions, max_tokens=e.max_tokens,
                                  use_chat_template=not ctx.is_base(reference_dir))
        judge = make_judge(ctx.llm_for(ctx.base_dir), e.judge_mode, use_chat_template=False)
        result = compare_answers(judge, instructions, ours, theirs)
        metrics.update(win_rate=result.win_rate, win_rate_se=result.standard_error,
                       judge_wins=result.wins, judge_ties=result.ties, judge_losses=result.losses,
                       judge_n=result.n)
    return metrics


# --- the toy world: what the checker says about M_i and its data ---------------------------
def world_metrics(ctx: IterationContext, model_dir: Path) -> dict:
    """Held-out accuracy of model_dir (greedy), its accuracy as a judge of right and wrong
    answers, and, for an iteration, how correct the kept training pairs are against all
    answered pairs."""
    from engine.generation import SamplingParams
    from engine.world.measure import (assessed_pairs_judge_auc, heldout_accuracy, judge_accuracy,
                                      judge_items, kept_pair_correctness)
    from engine.world.tasks import held_out_tasks

    w, a = ctx.cfg.world, ctx.cfg.assessment
    tasks = held_out_tasks(w.heldout_per_family, seed=w.seed)
    llm = ctx.llm_for(model_dir)
    chat = ctx.use_chat(ctx.cfg.response.template, model_dir)

    def generate(prompts: list[str]) -> list[str]:
        # the prompts are raw; a chat model gets its template around the same text
        texts = [llm.tokenizer.apply_chat_template([{"role": "user", "content": p.rstrip("\n")}],
                                                   add_generation_prompt=True) if chat else p for p in prompts]
        outs = llm.generate(texts, SamplingParams(temperature=0.0, max_tokens=ctx.cfg.response.max_tokens),
                            use_tqdm=False)
        return [o.text for o in outs]

    kinds = KINDS_BY_LEVEL[a.level] or ("quality",)

    def score(triples: list[tuple[str, str, str]]) -> list[float | None]:
        pairs = [{"id": str(i), "instruction": t[0], "input": t[1], "response": t[2]} for i, t in enumerate(triples)]
        judge_chat = ctx.use_chat(a.template, model_dir)
        prompts = {(p["id"], k): _judge_prompt(llm, k, p, judge_chat) for p in pairs for k in kinds}
        scores = (_logprob_scores(llm, prompts) if a.mode == "logprob"
                  else {key: v[0] for key, v in _sampled_scores(ctx, llm, prompts).items()})
        out = []
        for p in pairs:
            vals = [scores[(p["id"], k)] for k in kinds]
            out.append(None if any(v is None for v in vals) else min(vals))
        return out

    result = {"heldout": heldout_accuracy(generate, tasks),
              "judge": judge_accuracy(score, judge_items(tasks, seed=w.seed), threshold=a.threshold)}
    if ctx.iteration > 0:
        answered = [r for r in ctx.run.read(ctx.iteration, "responses.jsonl")]
        assessed = list(ctx.run.read(ctx.iteration, "assessed.jsonl"))
        result["data"] = kept_pair_correctness([r for r in assessed if r["keep"]], answered)
        if a.level != "none":   # level none scores nothing
            result["data"]["judge_on_pairs"] = assessed_pairs_judge_auc(assessed)
    return result
