"""Wall time per stage of one I-SHEEP iteration.

    python benchmarks/isheep_iteration.py                       # the toy world's default job, CPU
    python benchmarks/isheep_iteration.py --model DIR --prompts 1000 --device cuda   # e.g. a 0.5B model on an H100

Runs one iteration of the loop into a fresh run directory (counts set on the command line,
everything else from the config) and writes each stage's seconds and counts, with the
device, versions and commit, to benchmarks/results/isheep_iteration-*.json.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402
from engine.selfalign.loop import run_isheep  # noqa: E402
from engine.selfalign.settings import load_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "recipes" / "configs" / "world_default.toml"))
    p.add_argument("--model", default="", help="HF checkpoint directory ('' = the config's model)")
    p.add_argument("--prompts", type=int, default=48, help="kept prompts to synthesize")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny iteration through the same functions (the test suite runs it)")
    p.add_argument("--out", help="directory for the JSON (default benchmarks/results)")
    p.add_argument("overrides", nargs="*", help="section.key=value settings")
    args = p.parse_args()
    if args.smoke:
        args.prompts = 8
        args.overrides = ["synthesis.meta_prompts_per_round=4", "response.n=2", *args.overrides]
    run_dir = Path(tempfile.mkdtemp(prefix="isheep-bench-"))
    overrides = [f"run.run_dir={run_dir}", "run.iterations=1", f"run.device={args.device}",
                 f"synthesis.num_prompts={args.prompts}", *args.overrides]
    if args.model:
        overrides += [f"run.model={args.model}", "run.dtype=auto"]
    cfg = load_config(args.config, overrides)
    start = time.time()
    run = run_isheep(cfg)
    total = time.time() - start
    seconds, counts = run.stage_seconds(), run.all_counts()
    results = {"total_seconds": round(total, 2),
               "base_eval_seconds": seconds.get(0, {}).get("eval"),
               "stages": {s: {"seconds": round(sec, 2),
                              "counts": {k: v for k, v in counts[1].get(s, {}).items() if k != "losses"}}
                          for s, sec in seconds.get(1, {}).items()}}
    for stage, r in results["stages"].items():
        print(f"{stage:>11}: {r['seconds']:8.2f} s  {r['counts']}")
    print(f"{'total':>11}: {total:8.2f} s")
    path = write_results("isheep_iteration", results, out_dir=args.out, model=args.model or cfg.run.model,
                         prompts=args.prompts, overrides=args.overrides)
    print(f"wrote {path}")
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
