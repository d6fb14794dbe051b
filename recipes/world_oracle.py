"""Is the judge the bottleneck? Retrain one loop iteration with the checker as the judge.

    python recipes/world_oracle.py --run-dir runs/world --iteration 1
    python recipes/world_oracle.py --run-dir runs/world_big1 training.overrides.lr=1e-4

Takes the answered pairs of one iteration of a finished world run and fine-tunes M_0 on
three selections of them, with the run's own training settings: every answered pair (as
assessment.level = none would), the pairs the run's judge kept, and only the pairs the
checker says are right (a perfect judge). Each model's greedy held-out accuracy is measured
as the loop measures it. If the checker's selection raises accuracy and the judge's does
not, the judge is what holds the loop back; if neither does, the training half is.
Writes a markdown table (default docs/world/oracle.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.selfalign.records import read_jsonl  # noqa: E402
from engine.selfalign.settings import load_config  # noqa: E402
from engine.world.tasks import check  # noqa: E402


def selections(run_dir: Path, iteration: int) -> dict[str, list[dict]]:
    it = run_dir / f"iter_{iteration:02d}"
    answered = [r for r in read_jsonl(it / "responses.jsonl") if r["drop"] is None]
    kept_ids = {r["id"] for r in read_jsonl(it / "assessed.jsonl") if r["keep"]}
    as_train = [{"id": r["id"], "instruction": r["instruction"], "input": r["input"],
                 "output": r["response"]} for r in answered]
    return {
        "all answered (no judge)": as_train,
        "kept by the run's judge": [r for r in as_train if r["id"] in kept_ids],
        "right by the checker (perfect judge)":
            [r for r in as_train if check(r["instruction"], r["input"], r["output"])],
    }


def finetune_and_measure(cfg, base: Path, data: list[dict], out: Path) -> dict:
    from engine.generation import LLM
    from engine.training import TrainConfig, train
    from engine.world.measure import heldout_accuracy
    from engine.world.model_measures import greedy_answers
    from engine.world.tasks import held_out_tasks

    out.mkdir(parents=True, exist_ok=True)
    data_path = out / "train.jsonl"
    data_path.write_text("".join(json.dumps(r) + "\n" for r in data))
    overrides = {"prompt_format": "chat", "seed": cfg.run.seed + 1, "progress": False,
                 **cfg.training.overrides}
    result = train(TrainConfig(model=str(base), data=[str(data_path)], output=str(out / "train"),
                               **overrides))
    llm = LLM(result.model_dir, dtype="float32", device="cpu", kv_cache_bytes=64 * 2**20,
              max_num_seqs=64, max_num_batched_tokens=4096, seed=cfg.run.seed)
    tasks = held_out_tasks(cfg.world.heldout_per_family, seed=cfg.world.seed)
    acc = heldout_accuracy(greedy_answers(llm, cfg.response.max_tokens), tasks)
    return {"examples": len(data), "final_loss": result.final_loss, "heldout": acc}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default="runs/world")
    p.add_argument("--iteration", type=int, default=1)
    p.add_argument("--out", default="runs/world_oracle")
    p.add_argument("--table", default="docs/world/oracle.md")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="training.overrides.KEY=VALUE on top of the run's")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    cfg = load_config(run_dir / "config.toml", args.overrides)
    base = Path(cfg.run.model)
    m0 = run_dir.joinpath("manifest.json")
    m0_acc = json.loads(m0.read_text())["iterations"]["0"]["stages"]["world"]["counts"]["heldout"]
    results = {}
    for k, (name, data) in enumerate(selections(run_dir, args.iteration).items()):
        t0 = time.time()
        results[name] = finetune_and_measure(cfg, base, data, Path(args.out) / f"selection_{k}")
        results[name]["seconds"] = round(time.time() - t0, 1)
        print(name, json.dumps(results[name]["heldout"]), flush=True)
    families = [f for f in m0_acc if f != "overall"]
    lines = ["# Retraining one iteration with a perfect judge", "",
             f"Answered pairs of iteration {args.iteration} of `{args.run_dir}` "
             f"(config `{args.run_dir}/config.toml` {' '.join(args.overrides)}); M_0 fine-tuned "
             "on each selection with the run's training settings; greedy held-out accuracy as "
             "the loop measures it. "
             "Written by `recipes/world_oracle.py`.", "",
             "| training data | pairs | right share | held-out accuracy | "
             + " | ".join(families) + " |", "|---" * (len(families) + 4) + "|",
             f"| none (M_0) | - | - | {m0_acc['overall']:.3f} | "
             + " | ".join(f"{m0_acc[f]:.2f}" for f in families) + " |"]
    data = selections(run_dir, args.iteration)
    for name, r in results.items():
        verdicts = [check(d["instruction"], d["input"], d["output"]) for d in data[name]]
        known = [v for v in verdicts if v is not None]
        share = sum(known) / len(known) if known else float("nan")
        lines.append(f"| {name} | {r['examples']} | {share:.3f} | {r['heldout']['overall']:.3f} | "
                     + " | ".join(f"{r['heldout'][f]:.2f}" for f in families) + " |")
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
