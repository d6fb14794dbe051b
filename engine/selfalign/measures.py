"""Step 9: what the loop measures of M_0 and of every M_i, into eval.json.

  ifeval       IFEval-style accuracies, and the judged win rate against M_{i-1} (judge: M_0)
  harness      lm-evaluation-harness tasks (eval.harness_tasks), one task at a time
  <extension>  each plugged-in extension's measures of the model and of the iteration's data

Each is its own resumable stage; eval.json (base_eval.json for M_0) holds one key per stage.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.selfalign.extension import ExtensionContext
from engine.selfalign.judging import lowest_score
from engine.selfalign.records import atomic_write_json


def eval_path(run, iteration: int) -> Path:
    return run.root / "base_eval.json" if iteration == 0 else run.path(iteration, "eval.json")


def read_eval(run, iteration: int) -> dict:
    path = eval_path(run, iteration)
    return json.loads(path.read_text()) if path.is_file() else {}


def write_eval_part(run, iteration: int, key: str, value) -> None:
    """Set eval.json[key] (read, update, write atomically); only the writer rank writes."""
    if run.is_writer:
        data = read_eval(run, iteration)
        data[key] = value
        atomic_write_json(eval_path(run, iteration), data)


def ifeval_and_pairwise(ctx, model_dir: Path, reference_dir: Path | None) -> dict:
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


def harness_task(ctx, model_dir: Path, task: str) -> dict:
    """One lm-evaluation-harness task on model_dir through the loop's pooled engine."""
    from engine.eval.harness import evaluate_tasks

    e = ctx.cfg.eval
    return evaluate_tasks(ctx.llm_for(model_dir), [task], num_fewshot=e.harness_num_fewshot,
                          limit=e.harness_limit, include_path=e.harness_include_path or None,
                          chat_template=e.harness_chat_template)


def extension_context(ctx) -> ExtensionContext:
    """What an extension may use of the loop for iteration ctx.iteration."""
    def judge(model_dir: Path, triples: list[tuple[str, str, str]]) -> list[float | None]:
        pairs = [{"id": str(k), "instruction": t[0], "input": t[1], "response": t[2]}
                 for k, t in enumerate(triples)]
        scored = ctx.judge_scores(pairs, judge_dir=Path(model_dir),
                                  seed_parts=(ctx.cfg.run.seed, ctx.iteration, "measure-judge"))
        from engine.selfalign.judging import deciding_scores
        return [lowest_score(deciding_scores(scored[p["id"]])) for p in pairs]

    return ExtensionContext(cfg=ctx.cfg, run=ctx.run, iteration=ctx.iteration, base_dir=ctx.base_dir,
                            llm_for=ctx.llm_for, answer_prompt=ctx.answer_prompt, judge=judge,
                            seed=ctx.cfg.run.seed)


def extension_measures(ctx, ext, model_dir: Path) -> dict:
    """An extension's measures of model_dir, plus (iterations only) of the iteration's data."""
    ectx = extension_context(ctx)
    result = dict(ext.measure_model(ectx, Path(model_dir)))
    if ctx.iteration > 0:
        data = ext.measure_iteration(ectx)
        if data:
            result["data"] = data
    return result
