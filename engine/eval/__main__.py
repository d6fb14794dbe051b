"""Command line: ``python -m engine.eval ifeval ...`` and ``... generate-and-score ...``.

``ifeval`` scores responses someone already has (one ``{"prompt", "response"}`` per line,
matched to the data by prompt text). ``generate-and-score`` loads a model directory with
``engine.LLM``, answers the prompts greedily and scores them. Both print the metrics as
JSON and write them to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.eval",
                                     description="Verifiable-instruction (IFEval) evaluation.")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
