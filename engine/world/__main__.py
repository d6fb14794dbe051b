"""python -m engine.world {base,corpus,seeds,heldout} ...: write the world's files."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m engine.world",
                                description="Files for the verifiable toy world.")
    sub = p.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="random small model dir with the world tokenizer")
    base.add_argument("out_dir")
    base.add_argument("--size", default="small")
    base.add_argument("--seed", type=int, default=0)
    base.add_argument("--vocab-size", type=int, default=1500)
    corpus = sub.add_parser("corpus", help="pretraining documents as {'text', 'kind'} JSONL")
    corpus.add_argument("out")
    corpus.add_argument("--docs", type=int, required=True)
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--wrong-rate", type=float, default=0.3)
    corpus.add_argument("--judge-noise", type=float, default=0.1)
    corpus.add_argument("--tokenizer", default=None,
                        help="model dir whose tokenizer bounds task-list documents to 512 tokens")
    seeds = sub.add_parser("seeds", help="seed file (Self-Instruct format) for the loop")
    seeds.add_argument("out")
    seeds.add_argument("--n", type=int, default=36)
    seeds.add_argument("--seed", type=int, default=0)
    heldout = sub.add_parser("heldout", help="evaluation tasks as JSONL")
    heldout.add_argument("out")
    heldout.add_argument("--per-family", type=int, default=50)
    heldout.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    if args.command == "base":
        from engine.world.base_model import write_world_base_dir
        out = write_world_base_dir(args.out_dir, seed=args.seed, size=args.size,
                                   vocab_size=args.vocab_size)
        print(f"wrote world base model ({args.size}) to {out}")
    elif args.command == "corpus":
        from engine.world.corpus import write_corpus
        counts = write_corpus(args.out, args.docs, args.seed, wrong_rate=args.wrong_rate,
                              judge_noise=args.judge_noise, tokenizer=args.tokenizer)
        print(f"wrote {sum(counts.values())} documents to {args.out}: {counts}")
    elif args.command == "seeds":
        from engine.world.seeds import write_seed_file
        print(f"wrote {args.n} seed tasks to {write_seed_file(args.out, args.n, args.seed)}")
    else:
        from engine.world.tasks import held_out_tasks
        tasks = held_out_tasks(args.per_family, args.seed)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(asdict(t)) + "\n" for t in tasks), encoding="utf-8")
        print(f"wrote {len(tasks)} held-out tasks to {out}")


if __name__ == "__main__":
    main()
