"""Time the ROUGE-L novelty filter on synthetic prompts (2k and 10k) against the seed pool.

    python benchmarks/rouge_novelty.py [--sizes 2000 10000] [--reference-sample 200]

Prints a table and writes benchmarks/results/rouge_novelty.json with the device, library
versions and git commit. The reference column times rouge-score's pure-Python LCS (what
Alpaca / I-SHEEP run, one process) on the first `--reference-sample` prompts and scales
that to the full size; it is an estimate, marked as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.selfalign.rouge import NoveltyFilter  # noqa: E402
from engine.selfalign.run_record import device_name, git_commit, package_version as version  # noqa: E402
from engine.selfalign.seeds import load_default_seeds  # noqa: E402


def synthetic_prompts(n: int, seed: int = 0) -> list[str]:
    """Instruction-like texts: Zipf-distributed words, 6..30 long, 15% near-duplicates."""
    rng = random.Random(seed)
    vocab = [f"w{k}" for k in range(3000)]
    weights = [1.0 / (k + 1) for k in range(len(vocab))]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.15:
            words = rng.choice(texts).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
        else:
            words = rng.choices(vocab, weights, k=rng.randint(6, 30))
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def reference_seconds(pool: list[str], texts: list[str]) -> float:
    """rouge-score's tokenizer + _score_lcs, sequential, keeping the pool like the loop."""
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool_tokens = [scorer._tokenizer.tokenize(t) for t in pool]
    start = time.perf_counter()
    for text in texts:
        tokens = scorer._tokenizer.tokenize(text)
        best = max(rouge_scorer._score_lcs(tokens, p).fmeasure for p in pool_tokens)
        if best <= 0.7:
            pool_tokens.append(tokens)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--reference-sample", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rouge_novelty.json")
    parser.add_argument("--smoke", action="store_true",
                        help="one small size through the same functions (the test suite runs it)")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.reference_sample = [200], 20

    seeds = [s.instruction for s in load_default_seeds()]
    rows = []
    for n in args.sizes:
        texts = synthetic_prompts(n)
        start = time.perf_counter()
        batched = NoveltyFilter(seeds).add_many_if_novel(texts)
        batched_s = time.perf_counter() - start

        one_by_one = NoveltyFilter(seeds)
        start = time.perf_counter()
        singles = [one_by_one.add_if_novel(t) for t in texts]
        single_s = time.perf_counter() - start
        assert singles == batched, "batched and one-by-one novelty results differ"

        row = {"prompts": n, "kept": sum(r.kept for r in batched),
               "final_pool": len(seeds) + sum(r.kept for r in batched),
               "batched_s": round(batched_s, 3), "one_by_one_s": round(single_s, 3)}
        sample = texts[:min(args.reference_sample, n)]
        if sample and version("rouge-score"):
            # Per-prompt cost grows with the pool, so scale by the mean pool size instead of
            # the prompt count: the sample sees a pool of ~len(seeds) + len(sample)/2.
            ref_s = reference_seconds(seeds, sample)
            kept_rate = row["kept"] / n
            mean_pool_full = len(seeds) + kept_rate * n / 2
            mean_pool_sample = len(seeds) + kept_rate * len(sample) / 2
            estimate = ref_s * (n / len(sample)) * (mean_pool_full / mean_pool_sample)
            row["reference_sample_prompts"] = len(sample)
            row["reference_sample_s"] = round(ref_s, 3)
            row["reference_full_estimate_s"] = round(estimate, 1)
        rows.append(row)
        print(json.dumps(row))

    result = {
        "benchmark": "rouge_novelty",
        "device": "cpu",
        "cpu": device_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("rapidfuzz", "numpy", "rouge-score", "torch",
                                              "triton")},
        "git_commit": git_commit(),
        "seed_pool": len(seeds),
        "threshold": 0.7,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
