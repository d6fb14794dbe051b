"""Evaluate a model: IFEval accuracies and, against a reference model, a judged win rate.

Generation is greedy (temperature 0, seed 0), so the same model gives the same answers.
Prompts are sent raw (``prompt + "\\n"``, as the self-alignment loop prompts a base model)
or wrapped in the model's chat template; the caller says which for each model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engine.eval.ifeval import IFEvalPrompt, read_ifeval_data, score_ifeval
from engine.eval.judge import compare_answers, make_judge, read_judge_prompts
from engine.prompt_format import chat_prompt, raw_prompt


def format_prompts(llm, prompts: Sequence[str], *, use_chat_template: bool) -> list[str]:
    """Prompt texts as the model will see them."""
    if use_chat_template:
        return [chat_prompt(llm.tokenizer, p) for p in prompts]
    return [raw_prompt(p) for p in prompts]


def generate_answers(llm, prompts: Sequence[str], *, max_tokens: int,
                     use_chat_template: bool) -> list[str]:
    """Greedy answers of ``llm`` to ``prompts``, in order."""
    from engine import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0)
    outputs = llm.generate(format_prompts(llm, prompts, use_chat_template=use_chat_template),
                           params)
    return [out.text for out in outputs]


def evaluate_model(llm, *, ifeval_data: str | Path | Sequence[IFEvalPrompt] | None = None,
                   reference_llm=None, judge_llm=None, max_tokens: int = 512,
                   judge_mode: str = "generate", use_chat_template: bool = False,
                   reference_use_chat_template: bool | None = None,
                   judge_use_chat_template: bool | None = None,
                   judge_prompts: str | Path | Sequence[str] | None = None) -> dict:
    """IFEval metrics of ``llm`` and, with ``reference_llm``, its judged win rate against it.

    ``ifeval_data`` is a path to an IFEval ``input_data.jsonl``, already-read prompts, or
    None for our own prompt set. The pairwise comparison answers ``judge_prompts`` (our
    held-out instruction set when None) with both models and lets ``judge_llm`` pick in both
    orders (``judge_mode`` "generate" or "logprob"). The chat-template flags of the
    reference and the judge default to ``use_chat_template``.

    Returns a dict with ``prompt_level_strict_acc``, ``inst_level_strict_acc``,
    ``prompt_level_loose_acc``, ``inst_level_loose_acc``, ``num_prompts``,
    ``num_instructions``, ``inst_strict_acc_by_id``, and with a reference also
    ``win_rate``, ``win_rate_se`` (NaN below two prompts), ``judge_wins``, ``judge_ties``,
    ``judge_losses`` and ``judge_n``.
    """
    if reference_llm is not None and judge_llm is None:
        raise ValueError("a reference model needs a judge: pass judge_llm as well")
    if judge_mode not in ("generate", "logprob"):
        raise ValueError(f"judge_mode must be 'generate' or 'logprob', got {judge_mode!r}")
    data = (list(ifeval_data) if isinstance(ifeval_data, (list, tuple))
            else read_ifeval_data(ifeval_data))
    responses = generate_answers(llm, [d.prompt for d in data], max_tokens=max_tokens,
                                 use_chat_template=use_chat_template)
    metrics, _ = score_ifeval(data, responses)
    if reference_llm is None:
        return metrics

    instructions = (list(judge_prompts) if isinstance(judge_prompts, (list, tuple))
                    else read_judge_prompts(judge_prompts))
    ours = generate_answers(llm, instructions, max_tokens=max_tokens,
                            use_chat_template=use_chat_template)
    reference_template = (use_chat_template if reference_use_chat_template is None
                          else reference_use_chat_template)
    theirs = generate_answers(reference_llm, instructions, max_tokens=max_tokens,
                              use_chat_template=reference_template)
    judge = make_judge(judge_llm, judge_mode, use_chat_template=(
        use_chat_template if judge_use_chat_template is None else judge_use_chat_template))
    result = compare_answers(judge, instructions, ours, theirs)
    metrics.update({"win_rate": result.win_rate, "win_rate_se": result.standard_error,
                    "judge_wins": result.wins, "judge_ties": result.ties,
                    "judge_losses": result.losses, "judge_n": result.n})
    return metrics
