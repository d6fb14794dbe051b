"""What two of the release's decisions change, measured with the loop's own stages on a model
(default: the toy world's shipped base model and its default config).

  novelty pool   prompts kept (and dropped as similar) over the same rounds of synthesis,
                 with the release's per-call pool against our pool over the whole run
  judge decoding pairs kept by the judge over the same answers, greedy (our engine default)
                 against sampled at T 1.0 / top_p 0.95 (the release)

    python benchmarks/fidelity_effects.py [--config recipes/configs/world_default.toml] [--rounds 6]

Writes benchmarks/results/fidelity_effects-*.json (docs/FIDELITY.md quotes it).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402


def _stage_ctx(cfg, root: Path, pool):
    from engine.selfalign import stages
    from engine.selfalign.run_directory import RunDirectory

    run = RunDirectory(root)
    run.iter_dir(1).mkdir(parents=True, exist_ok=True)
    base = Path(cfg.run.model)
    return stages.IterationContext(cfg, run, 1, base, base, pool.get)


def main() -> None:
    import torch

    from engine.selfalign import stages
    from engine.selfalign.loop import ModelPool
    from engine.selfalign.settings import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "recipes" / "configs" / "world_default.toml"))
    p.add_argument("--rounds", type=int, default=6, help="synthesis rounds per pool")
    p.add_argument("--rouge", type=float, default=0.7, help="ROUGE-L threshold (the release's 0.7)")
    p.add_argument("--pairs", type=int, default=96, help="prompts answered for the judge comparison")
    p.add_argument("--smoke", action="store_true",
                   help="one round and a few pairs through the same functions (the test suite runs it)")
    p.add_argument("--out", help="directory for the JSON (default benchmarks/results)")
    args = p.parse_args()
    smoke = ["synthesis.meta_prompts_per_round=4", "response.n=2"] if args.smoke else []
    if args.smoke:
        args.rounds, args.pairs = 1, 8
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="fidelity-"))
    results = {}
    try:
        for pool_kind in ("run", "call"):
            cfg = load_config(args.config, [f"synthesis.novelty_pool={pool_kind}",
                                            f"synthesis.rouge_threshold={args.rouge}",
                                            f"synthesis.max_rounds={args.rounds}",
                                            "synthesis.num_prompts=100000", *smoke])
            pool = ModelPool(cfg)
            counts = stages.synthesize_prompts(_stage_ctx(cfg, work / f"pool_{pool_kind}", pool))
            pool.release()
            results[f"novelty_pool_{pool_kind}"] = {
                "rounds": counts["rounds"], "parsed": counts["parsed"], "kept": counts["kept"],
                "dropped_as_similar": counts["dropped"].get("similar", 0)}
        base_cfg = load_config(args.config, [f"synthesis.num_prompts={args.pairs}", *smoke])
        pool = ModelPool(base_cfg)
        ctx = _stage_ctx(base_cfg, work / "judge", pool)
        stages.synthesize_prompts(ctx)
        stages.generate_responses(ctx)
        answered = work / "judge" / "iter_01" / "responses.jsonl"
        for name, overrides in (("greedy", ["assessment.temperature=0.0", "assessment.top_p=1.0"]),
                                ("sampled", ["assessment.temperature=1.0", "assessment.top_p=0.95"])):
            cfg = load_config(args.config, overrides + smoke)
            jctx = _stage_ctx(cfg, work / f"judge_{name}", pool)
            shutil.copy(answered, jctx.run.path(1, "responses.jsonl"))
            c = stages.assess_pairs(jctx)
            results[f"judge_{name}"] = {"pairs": c["pairs"], "kept": c["kept"],
                                        "kept_share": round(c["kept"] / max(1, c["pairs"]), 4),
                                        "unparsed_pairs": c.get("unparsed_pairs", 0)}
        pool.release()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for k, v in results.items():
        print(f"{k:>22}: {v}")
    path = write_results("fidelity_effects", results, out_dir=args.out, config=args.config,
                         rounds=args.rounds, rouge_threshold=args.rouge, pairs=args.pairs)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
