"""Pretrain the toy world's base model M_0 on the CPU with the project's trainer, and measure it.

The shipped M_0 (engine/world/data/base_model, record in base_model.json) takes two runs,
3.1M tokens in all (~13 min on one idle thread at the 3.8-4.7k tokens/s we saw on a quiet
core; 37 min on 2 cores shared with other jobs):

    # stage 1: a random model on 48k documents of the default mix (2089 steps)
    OMP_NUM_THREADS=1 python recipes/world_pretrain.py --out runs/world_stage1 \
        --work runs/world_pretrain_1 --skip-measure
    # stage 2: 30k judge-heavy documents from stage 1 (1210 steps): the verdict's comparison
    # of two tokens is the slowest thing to learn (in-distribution verdicts 0.82 -> 0.99)
    OMP_NUM_THREADS=1 python recipes/world_pretrain.py --init runs/world_stage1 --seed 1 \
        --docs 30000 --mix 0.2,0.13,0.55,0.11,0.01 --lr 1e-3 --warmup 20 --work runs/world_pretrain_2

    python recipes/world_pretrain.py --docs 3000 --out /tmp/m0   # a quick pilot
    python recipes/world_pretrain.py --measure-only              # re-measure the shipped model

1. a random "small" world model directory with the world tokenizer (write_world_base_dir)
2. the world corpus (engine.world.corpus: forward facts, taught inverse answers, check
   traces, explain-then-score judgements in the loop's judge prompt, meta-prompt task lists)
3. engine.training.train on it, one epoch, loss on the completions only
4. the exported model (fp32 safetensors, a few MB) copied to --out and measured with the
   loop's own prompts (engine.world.model_measures: held-out greedy accuracy and pass@k, the
   forward facts, the judge on its own samples, synthesized task lists); the record goes
   next to it as <out>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # runnable from a checkout without installing

import torch  # noqa: E402

DEFAULT_OUT = ROOT / "engine" / "world" / "data" / "base_model"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json")


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where the HF-layout model goes")
    p.add_argument("--work", default="runs/world_pretrain", help="init dir, corpus, trainer output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="small", help="engine.world.base_model.WORLD_SIZES key")
    p.add_argument("--docs", type=int, default=None, help="corpus documents (default: CorpusSettings)")
    p.add_argument("--mix", default=None, help="forward,inverse,check,judged,task_list shares "
                   "(default: CorpusSettings)")
    p.add_argument("--init", default=None, help="continue from this model directory (and its "
                   "tokenizer) instead of a random init; give another --seed for a fresh corpus")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per packed micro-batch")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pass-k", type=int, default=8)
    p.add_argument("--measure-only", action="store_true", help="measure --out, train nothing")
    p.add_argument("--skip-measure", action="store_true")
    return p.parse_args(argv)


def pretrain(args) -> dict:
    from engine.training import TrainConfig, train
    from engine.world.base_model import write_world_base_dir
    from engine.world.corpus import DOC_KINDS, CorpusSettings, write_corpus

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
    settings = CorpusSettings()
    if args.docs is not None:
        settings.n_docs = args.docs
    if args.mix:
        shares = [float(x) for x in args.mix.split(",")]
        if len(shares) != len(DOC_KINDS):
            raise SystemExit(f"--mix {args.mix!r}: give {len(DOC_KINDS)} shares ({','.join(DOC_KINDS)})")
        for kind, share in zip(DOC_KINDS, shares):
            setattr(settings, kind, share)
    counts = write_corpus(work / "corpus.jsonl", settings, seed=args.seed)
    t1 = time.time()
    result = train(TrainConfig(
        model=str(base), data=[str(work / "corpus.jsonl")], output=str(work / "train"),
        prompt_format="raw", seq_len=args.seq_len, epochs=1, lr=args.lr, min_lr=args.lr / 10,
        warmup_steps=args.warmup, seed=args.seed, export_dtype="float32", progress=True))
    t2 = time.time()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy2(Path(result.model_dir) / name, out / name)
    return {"corpus": {"by_kind": counts, "settings": dataclasses.asdict(settings)},
            "training": {"steps": result.steps, "tokens": result.tokens,
                         "first_loss": result.losses[0], "final_loss": result.final_loss,
                         "losses_every_20": result.losses[::20], "seq_len": args.seq_len,
                         "epochs": 1, "lr": args.lr, "warmup_steps": args.warmup},
            "seconds": {"setup": round(t1 - t0, 1), "train": round(t2 - t1, 1)}}


def measure(model_dir: Path, seed: int, pass_k: int) -> dict:
    from engine.generation import LLM
    from engine.world.model_measures import measure_base_model

    llm = LLM(str(model_dir), dtype="float32", device="cpu", kv_cache_bytes=64 * 2**20,
              max_num_seqs=128, max_num_batched_tokens=8192, seed=seed)
    return measure_base_model(llm, seed=seed, pass_k=pass_k)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # denormal floats (small random weights) made CPU generation ~50x slower in our runs
    torch.set_flush_denormal(True)
    path = Path(args.out).with_suffix(".json")
    given = sys.argv[1:] if argv is None else argv
    if args.measure_only:
        record = json.loads(path.read_text()) if path.is_file() else {}
    else:
        record = {"command": " ".join(["python recipes/world_pretrain.py", *given]),
                  "seed": args.seed, "size": args.size, "torch": torch.__version__}
        if args.init and Path(args.init).with_suffix(".json").is_file():
            # the record of the model this run continues: the chain of commands stays with it
            record["init_record"] = json.loads(Path(args.init).with_suffix(".json").read_text())
        record.update(pretrain(args))
        path.write_text(json.dumps(record, indent=2) + "\n")
    if not args.skip_measure:
        t0 = time.time()
        record["measures"] = measure(Path(args.out), args.seed, args.pass_k)
        record.setdefault("seconds", {})["measure"] = round(time.time() - t0, 1)
        print(json.dumps(record["measures"], indent=2))
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
