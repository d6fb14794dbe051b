"""The paper's ablations, run in the toy world where every answer can be checked.

    python recipes/world_ablations.py                        # every variant, then the table
    python recipes/world_ablations.py --only level_none,start_previous --iterations 2
    python recipes/world_ablations.py --table-only           # rebuild the table from the runs

Each variant is recipes/configs/world.toml plus `section.key=value` overrides, run by
recipes/isheep_qwen.py into its own run directory (runs/world_ablations/<name>; a killed
run resumes). --iterations, --num-prompts and --heldout-per-family shrink every variant
alike so that the whole set fits a CPU budget. The table (markdown) gives, per variant,
held-out accuracy of M_0, M_1, ..., and per iteration the kept pairs, their correct share
and the correct share of all answered pairs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.selfalign.run_directory import RunDirectory  # noqa: E402

# name -> (what it changes, overrides on top of world.toml)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "default": ("world.toml as is", []),
    "threshold_low": ("keep more: threshold one step lower", ["assessment.threshold={low}"]),
    "threshold_high": ("keep fewer: threshold one step higher", ["assessment.threshold={high}"]),
    "level_none": ("no self-assessment: every answered pair trains", ["assessment.level=none"]),
    "level_quality": ("quality score only", ["assessment.level=quality"]),
    "level_following": ("instruction-following score only", ["assessment.level=following"]),
    "mode_sample": ("greedy judgement parsed (reference), threshold 8",
                    ["assessment.mode=sample", "assessment.threshold=8.0"]),
    "start_previous": ("fine-tune M_{i-1} instead of M_0", ["training.start_from=previous"]),
}


def run_variant(name: str, args, threshold: float) -> float:
    _, overrides = VARIANTS[name]
    step = args.threshold_step
    overrides = [o.format(low=round(threshold - step, 4), high=round(threshold + step, 4))
                 for o in overrides]
    shrink = [f"run.iterations={args.iterations}"]
    if args.num_prompts:
        shrink.append(f"synthesis.num_prompts={args.num_prompts}")
    if args.heldout_per_family:
        shrink.append(f"world.heldout_per_family={args.heldout_per_family}")
    cmd = [sys.executable, str(ROOT / "recipes" / "isheep_qwen.py"), "--config", args.config,
           "--run-dir", str(Path(args.runs_dir) / name), *shrink, *overrides]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return time.time() - t0


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def variant_rows(name: str, run_root: Path) -> list[str] | None:
    counts = RunDirectory(run_root, is_writer=False).all_counts()
    if not counts.get(0, {}).get("world"):
        return None
    iters = sorted(i for i in counts if i > 0 and counts[i].get("world"))
    acc = " → ".join(_fmt(counts[i]["world"]["heldout"]["overall"]) for i in [0] + iters)
    rows = []
    for i in iters:
        data = counts[i]["world"].get("data", {})
        kept, answered = data.get("kept", {}), data.get("answered", {})
        trained = counts[i].get("model", {}).get("examples")
        first = i == iters[0]
        rows.append(f"| {name if first else ''} | {acc if first else ''} | {i} "
                    f"| {_fmt(answered.get('n'))} | {_fmt(trained)} "
                    f"| {_fmt(answered.get('correct_share'))} | {_fmt(kept.get('correct_share'))} "
                    f"| {_fmt(data.get('lift'))} "
                    f"| {_fmt(data.get('judge_on_pairs', {}).get('auc'))} "
                    f"| {_fmt(counts[i]['world']['heldout']['overall'])} |")
    return rows


def write_table(args, seconds: dict[str, float]) -> Path:
    shrink = [f"run.iterations={args.iterations}"]
    if args.num_prompts:
        shrink.append(f"synthesis.num_prompts={args.num_prompts}")
    if args.heldout_per_family:
        shrink.append(f"world.heldout_per_family={args.heldout_per_family}")
    lines = ["# I-SHEEP ablations in the toy world", "",
             f"Base config `{args.config}`, every variant with {', '.join(shrink)}; threshold "
             f"step {args.threshold_step}; run directories under `{args.runs_dir}`. Written by "
             "`recipes/world_ablations.py`.", "",
             "Held-out accuracy is greedy, over the held-out tasks of all families "
             "(M_0 → M_1 → ...). "
             "Per iteration: answered = pairs that passed the response filters and were "
             "judged, kept = pairs that trained, and the checker's correct share among answered "
             "and kept pairs (only tasks the checker recognizes count); lift = kept − answered "
             "share; judge AUC = how well the iteration's judge ranked those answered pairs "
             "(empty where nothing was scored).", "",
             "| variant | held-out accuracy M_0 → M_i | iter | answered | kept "
             "| answered correct | kept correct | lift | judge AUC | M_i held-out |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in VARIANTS:
        rows = variant_rows(name, Path(args.runs_dir) / name)
        lines += rows if rows else [f"| {name} | not run | | | | | | | | |"]
    lines += ["", "| variant | what it changes | wall seconds |", "|---|---|---|"]
    for name, (what, _) in VARIANTS.items():
        took = _fmt(round(seconds[name])) if name in seconds else "-"
        lines.append(f"| {name} | {what} | {took} |")
    out = Path(args.table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="recipes/configs/world.toml")
    p.add_argument("--runs-dir", default="runs/world_ablations")
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--num-prompts", type=int, default=0, help="0: as in the config")
    p.add_argument("--heldout-per-family", type=int, default=0, help="0: as in the config")
    # world.toml's logprob scores sit close together (quartiles of the lower score 3.62 / 3.65
    # / 3.70 on M_0's own pairs), so a step of 1 would keep everything or nothing
    p.add_argument("--threshold-step", type=float, default=0.03,
                   help="how far threshold_low / threshold_high move the threshold")
    p.add_argument("--table", default="docs/world/ablations.md")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    from engine.selfalign.settings import load_config
    threshold = load_config(ROOT / args.config).assessment.threshold
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    # wall seconds per variant, kept with the runs so that --table-only can show them
    timing = Path(args.runs_dir) / "seconds.json"
    seconds = json.loads(timing.read_text()) if timing.is_file() else {}
    if not args.table_only:
        for name in names:
            seconds[name] = run_variant(name, args, threshold)
            timing.write_text(json.dumps(seconds, indent=2))
    print(f"wrote {write_table(args, seconds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
