"""Pretrain the toy world's base model M_0 on the CPU with our own trainer, and measure it.

The shipped M_0 (engine/world/data/base_model, record in base_model.json) takes two runs:

    # stage 1, 13 min on one thread: a random model on 60k world documents
    python recipes/world_pretrain.py --out runs/world_stage1 --work runs/world_pretrain
    # stage 2, 8 min on two threads: a judge stage over stage 1's own sampled answers
    python recipes/world_pretrain.py --init runs/world_stage1 --seed 2 --own-answers 14000 \
        --docs 14000 --mix 1,0.02,0 --answer-loss-only --lr 1e-3 --warmup 50 --threads 2

    python recipes/world_pretrain.py --docs 2000 --out /tmp/m0 --work /tmp/m0_work   # a pilot

1. a random "small" world model directory with the world tokenizer (write_world_base_dir),
   or the --init model
2. the world corpus (write_corpus): answered tasks with a wrong share, numbered task lists in
   the meta-prompt's shape, graded pairs in the assessment prompts' shape; with
   --own-answers, graded pairs over the --init model's own sampled answers as well
3. engine.training.train on it (plain-text records, or with --answer-loss-only records whose
   loss is on the answer and the judgement alone), one epoch
4. the exported model (bf16 safetensors, a few MB) copied to --out, measured with the loop's
   own prompts (held-out accuracy, judge AUC on generated and on its own answers, parseable
   task lists), and a record written next to it as <out>.json: command, seed, corpus, steps,
   losses, seconds, the measures, and the --init model's record.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # runnable from a checkout without installing

import torch  # noqa: E402

from engine.world.corpus import CorpusMix, CorpusSettings, write_corpus  # noqa: E402

DEFAULT_OUT = ROOT / "engine" / "world" / "data" / "base_model"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json")


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where the HF-layout model goes")
    p.add_argument("--work", default="runs/world_pretrain", help="base dir, corpus, trainer output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="small", help="engine.world.base_model.WORLD_SIZES key")
    p.add_argument("--init", default=None,
                   help="continue from this model directory (and its tokenizer) instead of a "
                        "random init; give another --seed for a fresh corpus")
    p.add_argument("--answer-loss-only", action="store_true",
                   help="answered / graded documents carry loss on the output / judgement only "
                        "(CorpusSettings.answer_loss_only)")
    p.add_argument("--own-answers", type=int, default=0,
                   help="with --init: sample the init model's answers to this many training-side "
                        "tasks and add graded documents over them (own_answer_graded_documents)")
    p.add_argument("--docs", type=int, default=60000, help="corpus documents")
    p.add_argument("--mix", default="0.78,0.02,0.2", help="answered,task_list,graded shares")
    p.add_argument("--wrong-rate", type=float, default=0.3)
    p.add_argument("--judge-noise", type=float, default=0.1)
    p.add_argument("--off-task", type=float, default=0.0,
                   help="share of the graded wrong responses that answer another task")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per packed micro-batch")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 ran 5x faster than 2 on 2 cores shared with other jobs")
    p.add_argument("--own-answers-balance", action="store_true",
                   help="grade as many right answers as wrong ones (true outputs fill in)")
    p.add_argument("--heldout-per-family", type=int, default=20)
    p.add_argument("--skip-measure", action="store_true")
    return p.parse_args(argv)


def pretrain(args) -> dict:
    from engine.training import TrainConfig, train
    from engine.world.base_model import write_world_base_dir

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)   # a fresh trainer output: the trainer refuses stale checkpoints
    t0 = time.time()
    if args.init:
        base = Path(args.init)
        if not (base / "config.json").is_file():
            raise SystemExit(f"--init {base}: no config.json there")
    else:
        base = write_world_base_dir(work / "random_init", seed=args.seed, size=args.size)
    answered, task_list, graded = (float(x) for x in args.mix.split(","))
    settings = CorpusSettings(mix=CorpusMix(answered, task_list, graded),
                              wrong_rate=args.wrong_rate, judge_noise=args.judge_noise,
                              answer_loss_only=args.answer_loss_only,
                              graded_off_task_share=args.off_task)
    corpus = work / "corpus.jsonl"
    counts = write_corpus(corpus, args.docs, seed=args.seed, settings=settings, tokenizer=base)
    own = add_own_answer_documents(corpus, base, args) if args.own_answers else None
    t1 = time.time()
    result = train(TrainConfig(
        model=str(base), data=[str(corpus)], output=str(work / "train"), prompt_format="raw",
        seq_len=args.seq_len, epochs=args.epochs, lr=args.lr, min_lr=args.lr / 10,
        warmup_steps=args.warmup, seed=args.seed, export_dtype="bfloat16", progress=True))
    t2 = time.time()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy2(Path(result.model_dir) / name, out / name)
    return {"init": str(base) if args.init else "random",
            "own_answers": own,
            "corpus": {"documents": args.docs, "by_kind": counts, "mix": args.mix,
                       "wrong_rate": args.wrong_rate, "judge_noise": args.judge_noise,
                       "answer_loss_only": args.answer_loss_only,
                       "graded_off_task_share": args.off_task},
            "training": {"steps": result.steps, "tokens": result.tokens,
                         "final_loss": result.final_loss, "first_loss": result.losses[0],
                         "losses_every_10": result.losses[::10], "seq_len": args.seq_len,
                         "epochs": args.epochs, "lr": args.lr, "warmup_steps": args.warmup},
            "seconds": {"setup": round(t1 - t0, 1), "train": round(t2 - t1, 1)}}


def add_own_answer_documents(corpus: Path, model_dir: Path, args) -> dict:
    """Append graded documents over model_dir's own answers to args.own_answers training-side
    tasks (sampled as the loop samples its responses), and shuffle them into the corpus."""
    import random

    from engine.generation import LLM
    from engine.world.corpus import own_answer_graded_documents
    from engine.world.model_measures import sample_answers
    from engine.world.tasks import sample_task

    rng = random.Random(f"world-own-answers-{args.seed}")
    tasks = [sample_task(rng) for _ in range(args.own_answers)]
    llm = LLM(str(model_dir), dtype="float32", device="cpu", kv_cache_bytes=64 * 2**20,
              max_num_seqs=128, max_num_batched_tokens=8192, seed=args.seed)
    answers = sample_answers(llm, tasks, seed=args.seed)
    del llm
    docs = own_answer_graded_documents(answers, rng, args.judge_noise, args.own_answers_balance)
    lines = corpus.read_text(encoding="utf-8").splitlines()
    lines += [json.dumps(d, ensure_ascii=False) for d in docs]
    rng.shuffle(lines)
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    right = sum(ok for _, _, ok in answers)
    return {"tasks": len(answers), "right": right, "graded_documents": len(docs),
            "balance": args.own_answers_balance}


def measure(model_dir: Path, heldout_per_family: int, seed: int) -> dict:
    from engine.generation import LLM
    from engine.world.model_measures import measure_model

    llm = LLM(str(model_dir), dtype="float32", device="cpu", kv_cache_bytes=64 * 2**20,
              max_num_seqs=64, max_num_batched_tokens=4096, seed=seed)
    return measure_model(llm, heldout_per_family=heldout_per_family, seed=seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # denormal floats (small random weights) made CPU generation ~50x slower in our runs
    torch.set_flush_denormal(True)
    given = sys.argv[1:] if argv is None else argv
    record = {"command": " ".join(["python recipes/world_pretrain.py", *given]),
              "seed": args.seed, "size": args.size, "torch": torch.__version__}
    if args.init and Path(args.init).with_suffix(".json").is_file():
        # the record of the model this run continues, so the chain of commands stays with it
        record["init_record"] = json.loads(Path(args.init).with_suffix(".json").read_text())
    record.update(pretrain(args))
    if not args.skip_measure:
        t0 = time.time()
        record["measures"] = measure(Path(args.out), args.heldout_per_family, args.seed)
        record["measures"]["settings"] = {"heldout_per_family": args.heldout_per_family,
                                          "judge_per_family": 10, "meta_prompts": 32}
        record["seconds"]["measure"] = round(time.time() - t0, 1)
    path = Path(args.out).with_suffix(".json")
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("training", "seconds")}, indent=2))
    if "measures" in record:
        m = record["measures"]
        print("held-out accuracy:", json.dumps(m["heldout"]))
        print("judge AUC logprob / sample:", m["judge"]["logprob"]["auc"],
              m["judge"]["sample"]["auc"])
        own = m["judge_own"]
        print("judge AUC on its own answers:", own["auc"], json.dumps(
            {f: v["auc"] for f, v in own["by_family"].items()}))
        print("synthesis:", json.dumps({k: v for k, v in m["synthesis"].items()
                                        if k != "by_family"}))
    print(f"wrote {args.out} and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
