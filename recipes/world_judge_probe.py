"""Does a world model's judge read the response? Per-family AUC and a response sweep.

    python recipes/world_judge_probe.py engine/world/data/base_model

1. For one right and one wrong answer to each of --per-family held-out tasks per family:
   the logprob-mode score (expected score over "1||".."10||", as the loop computes it) for
   quality, following and their minimum, with AUC per family.
2. One instruction with very different responses (the right one, a near miss, another
   family's answer, a number, nothing): a judge that reads the response scores them apart.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

SWEEP = [
    ("Write a short sentence that ends with the word lemon.",
     ["They talked about the lemon.", "The lemon was there all day.", "She pointed at the violin.",
      "elnntu", "42", ""]),
    ("Sort the letters of the word tunnel in alphabetical order.",
     ["elnntu", "eelnntu", "tunnel", "She pointed at the violin.", "42"]),
]


def main(argv: list[str] | None = None) -> int:
    from engine.generation import LLM
    from engine.world.measure import _prob_greater, judge_items
    from engine.world.model_measures import logprob_scores
    from engine.world.tasks import held_out_tasks

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--per-family", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    llm = LLM(args.model_dir, dtype="float32", device="cpu", kv_cache_bytes=64 * 2**20,
              max_num_seqs=64, max_num_batched_tokens=4096)
    tasks = held_out_tasks(args.per_family, seed=args.seed)
    items = judge_items(tasks, seed=args.seed)
    families = [t.family for t in tasks for _ in (0, 1)]
    triples = [(i.instruction, i.input, i.response) for i in items]
    scores = {k: logprob_scores(llm, triples, k) for k in ("quality", "following")}
    scores["min"] = [min(q, f) for q, f in zip(scores["quality"], scores["following"])]
    print(f"{'family':14s} " + " ".join(f"{k:>20s}" for k in scores))
    for family in sorted(set(families)) + ["all"]:
        cells = []
        for values in scores.values():
            mine = [(s, i.correct) for s, i, f in zip(values, items, families)
                    if family in ("all", f)]
            right = [s for s, ok in mine if ok]
            wrong = [s for s, ok in mine if not ok]
            cells.append(f"AUC {_prob_greater(right, wrong):.2f} "
                         f"({sum(right) / len(right):.2f}/{sum(wrong) / len(wrong):.2f})")
        print(f"{family:14s} " + " ".join(f"{c:>20s}" for c in cells))
    print("(mean score of right / wrong answers in brackets)\n")
    for instruction, responses in SWEEP:
        print(instruction)
        for response, score in zip(responses, logprob_scores(
                llm, [(instruction, "", r) for r in responses], "quality")):
            print(f"  quality {score:.3f}  {response!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
