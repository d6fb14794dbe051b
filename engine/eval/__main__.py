"""Command line: ``python -m engine.eval ifeval ...``, ``... generate-and-score ...`` and
``... harness ...``.

``ifeval`` scores responses someone already has (one ``{"prompt", "response"}`` per line,
matched to the data by prompt text). ``generate-and-score`` loads a model directory with
``engine.LLM``, answers the prompts greedily and scores them. Both print the metrics as
JSON and write them to ``--out`` when given. ``harness`` runs lm-evaluation-harness tasks
with our engine as the model (``engine.eval.harness``); under torchrun each rank takes a share
of every batch and rank 0 prints and writes the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.eval.evaluate import generate_answers
from engine.eval.ifeval import match_responses, read_ifeval_data, read_responses, score_ifeval


def _emit(metrics: dict, out: str | None) -> None:
    text = json.dumps(metrics, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")


def _ifeval(args) -> None:
    data = read_ifeval_data(args.data)
    responses = match_responses(data, read_responses(args.responses))
    metrics, _ = score_ifeval(data, responses)
    _emit(metrics, args.out)


def _generate_and_score(args) -> None:
    from engine import LLM

    data = read_ifeval_data(args.data)
    llm = LLM(args.model)
    responses = generate_answers(llm, [d.prompt for d in data], max_tokens=args.max_tokens,
                                 use_chat_template=args.chat_template)
    if args.responses_out:
        Path(args.responses_out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.responses_out, "w", encoding="utf-8") as f:
            for item, response in zip(data, responses):
                f.write(json.dumps({"prompt": item.prompt, "response": response}) + "\n")
    metrics, _ = score_ifeval(data, responses)
    _emit(metrics, args.out)


def _harness(args) -> None:
    from engine.eval.harness import check_tasks, evaluate_tasks

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    check_tasks(tasks, args.include_path)            # before the model loads
    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"--model {args.model}: no such model directory")
    rank = _join_torchrun()
    results = evaluate_tasks(args.model, tasks, num_fewshot=args.num_fewshot, limit=args.limit,
                             include_path=args.include_path, chat_template=args.chat_template,
                             log_samples=args.log_samples, bootstrap_iters=args.bootstrap_iters,
                             dtype=args.dtype, device=args.device)
    if rank != 0 or results is None:
        return
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"results": results["results"], "sheep": results["sheep"]}, indent=2))


def _join_torchrun() -> int:
    """This process's rank; under torchrun (WORLD_SIZE > 1) it joins the process group."""
    from engine.distributed import init_process_group

    return init_process_group()[0]


def _number(text: str) -> int | float:
    """--limit: a count of documents, or a fraction of them below 1."""
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.eval",
                                     description="IFEval checks, and lm-evaluation-harness tasks "
                                                 "run by our engine.")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("ifeval", help="score existing responses")
    score.add_argument("--data", help="IFEval input_data.jsonl (default: our prompt set)")
    score.add_argument("--responses", required=True, help='JSONL of {"prompt", "response"}')
    score.add_argument("--out", help="write the metrics JSON here")
    score.set_defaults(run=_ifeval)

    gen = commands.add_parser("generate-and-score", help="answer with a model, then score")
    gen.add_argument("--model", required=True, help="Hugging Face-layout model directory")
    gen.add_argument("--data", help="IFEval input_data.jsonl (default: our prompt set)")
    gen.add_argument("--out", help="write the metrics JSON here")
    gen.add_argument("--max-tokens", type=int, default=512, help="new tokens per answer")
    gen.add_argument("--chat-template", action="store_true",
                     help="wrap prompts in the model's chat template (instruct models)")
    gen.add_argument("--responses-out", help="also write the generated responses as JSONL")
    gen.set_defaults(run=_generate_and_score)

    harness = commands.add_parser("harness", help="lm-evaluation-harness tasks with our engine")
    harness.add_argument("--model", required=True, help="Hugging Face-layout model directory")
    harness.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    harness.add_argument("--num-fewshot", type=int, help="few-shot examples (task default)")
    harness.add_argument("--limit", type=_number, help="documents per task (or a fraction < 1)")
    harness.add_argument("--out", help="write the full results JSON here")
    harness.add_argument("--chat-template", action="store_true",
                         help="wrap requests in the model's chat template (instruct models)")
    harness.add_argument("--include-path", help="folder of extra task YAMLs (local tasks)")
    harness.add_argument("--log-samples", action="store_true",
                         help="keep every request and response in the --out JSON")
    harness.add_argument("--bootstrap-iters", type=int, default=100000,
                         help="resamples for the standard errors of non-mean metrics (0: none)")
    harness.add_argument("--dtype", help="float32 | bfloat16 | float16 (default: the checkpoint's)")
    harness.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    harness.set_defaults(run=_harness)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    # small models on a shared CPU lose more to thread hand-offs than threads win; a user
    # who wants more sets OMP_NUM_THREADS
    env = os.environ.get("OMP_NUM_THREADS", "")
    torch.set_num_threads(int(env) if env.isdigit() and int(env) > 0 else 1)
    try:
        args.run(args)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
