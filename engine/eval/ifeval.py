"""IFEval data, strict and loose scoring, and the four accuracy metrics.

Data is IFEval's ``input_data.jsonl`` layout: one JSON object a line with ``key``,
``prompt``, ``instruction_id_list`` and ``kwargs`` (one dict per instruction). kwargs whose
value is None are dropped, so files exported from the Hugging Face copy of IFEval (where
every kwargs dict carries every key) read the same as the original.

Scoring follows IFEval: *strict* checks the response as written; *loose* counts an
instruction as followed when any of eight variants follows it (the response, the
response without its first line, without its last line, without both, and each of those
four with every ``*`` removed). Prompt-level accuracy is the fraction of prompts whose
every instruction is followed; instruction-level accuracy is the fraction of all
instructions followed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.eval.instructions import check_instruction, validate_kwargs
from engine.jsonl import json_records

DEFAULT_IFEVAL_DATA = Path(__file__).parent / "data" / "ifeval_prompts.jsonl"


@dataclass(frozen=True)
class IFEvalPrompt:
    """One prompt and the verifiable instructions it carries."""
    key: int | str
    prompt: str
    instruction_ids: tuple[str, ...]
    kwargs: tuple[dict, ...]


@dataclass(frozen=True)
class PromptResult:
    prompt: str
    response: str
    instruction_ids: tuple[str, ...]
    strict: tuple[bool, ...]
    loose: tuple[bool, ...]


def _parse_prompt(record: dict, where: str) -> IFEvalPrompt:
    for field in ("key", "prompt", "instruction_id_list", "kwargs"):
        if field not in record:
            raise ValueError(f"{where}: missing field {field!r}")
    prompt, ids, kwargs_list = record["prompt"], record["instruction_id_list"], record["kwargs"]
    if not isinstance(prompt, str):
        raise ValueError(f"{where}: 'prompt' must be a string")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{where}: 'instruction_id_list' must be a list of strings")
    if not isinstance(kwargs_list, list) or not all(isinstance(k, dict) for k in kwargs_list):
        raise ValueError(f"{where}: 'kwargs' must be a list of objects")
    if len(ids) != len(kwargs_list):
        raise ValueError(f"{where}: {len(ids)} instruction ids but {len(kwargs_list)} kwargs")
    cleaned = []
    for instruction_id, kwargs in zip(ids, kwargs_list):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        problem = validate_kwargs(instruction_id, kwargs)
        if problem:
            raise ValueError(f"{where}: {problem}")
        cleaned.append(kwargs)
    return IFEvalPrompt(record["key"], prompt, tuple(ids), tuple(cleaned))


def read_ifeval_data(path: str | Path | None = None) -> list[IFEvalPrompt]:
    """Read an IFEval ``input_data.jsonl`` (our own prompt set when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_IFEVAL_DATA
    prompts = [_parse_prompt(record, f"{path}:{number}") for number, record in json_records(path)]
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def read_responses(path: str | Path) -> dict[str, str]:
    """Read ``{"prompt", "response"}`` lines into a prompt -> response map."""
    path = Path(path)
    responses: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, record in json_records(path):
        prompt, response = record.get("prompt"), record.get("response")
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise ValueError(f"{path}:{number}: needs string fields 'prompt' and 'response'")
        if prompt in responses and responses[prompt] != response:
            raise ValueError(f"{path}:{number}: a different response to the prompt of line "
                             f"{first_line[prompt]}")
        responses[prompt] = response
        first_line.setdefault(prompt, number)
    return responses


def loose_variants(response: str) -> list[str]:
    """The eight variants loose scoring tries, in IFEval's order."""
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    plain = [response, without_first, without_last, without_both]
    return [response, response.replace("*", ""),
            *plain[1:], *(v.replace("*", "") for v in plain[1:])]


def score_prompt(item: IFEvalPrompt, response: str) -> PromptResult:
    """Strict and loose verdicts for every instruction of one prompt."""
    variants = loose_variants(response)
    strict, loose = [], []
    for instruction_id, kwargs in zip(item.instruction_ids, item.kwargs):
        strict.append(check_instruction(instruction_id, response, kwargs))
        loose.append(strict[-1] or any(check_instruction(instruction_id, v, kwargs)
                                       for v in variants[1:]))
    return PromptResult(item.prompt, response, item.instruction_ids, tuple(strict), tuple(loose))


def match_responses(data: list[IFEvalPrompt], responses: dict[str, str]) -> list[str]:
    """Responses in data order; a prompt without a response is an error naming it."""
    missing = [item.prompt for item in data if item.prompt not in responses]
    if missing:
        shown = missing[0] if len(missing[0]) <= 80 else missing[0][:77] + "..."
        raise KeyError(f"no response for {len(missing)} prompt(s), first: {shown!r}")
    return [responses[item.prompt] for item in data]


def ifeval_metrics(results: list[PromptResult]) -> dict:
    """The four IFEval accuracies, plus counts and per-instruction strict accuracy."""
    if not results:
        raise ValueError("no results to aggregate")
    metrics: dict = {"num_prompts": len(results),
                     "num_instructions": sum(len(r.strict) for r in results)}
    for mode in ("strict", "loose"):
        verdicts = [getattr(r, mode) for r in results]
        metrics[f"prompt_level_{mode}_acc"] = sum(all(v) for v in verdicts) / len(results)
        metrics[f"inst_level_{mode}_acc"] = (sum(sum(v) for v in verdicts)
                                             / max(1, metrics["num_instructions"]))
    by_id: dict[str, list[bool]] = {}
    for r in results:
        for instruction_id, ok in zip(r.instruction_ids, r.strict):
            by_id.setdefault(instruction_id, []).append(ok)
    metrics["inst_strict_acc_by_id"] = {k: sum(v) / len(v) for k, v in sorted(by_id.items())}
    return metrics


def score_ifeval(data: list[IFEvalPrompt], responses: list[str]) -> tuple[dict, list[PromptResult]]:
    """Score responses (in data order) and aggregate: returns (metrics, per-prompt results)."""
    if len(data) != len(responses):
        raise ValueError(f"{len(data)} prompts but {len(responses)} responses")
    results = [score_prompt(item, response) for item, response in zip(data, responses)]
    return ifeval_metrics(results), results
