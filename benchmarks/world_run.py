"""The toy world's full run on the fast CPU ops against the same run on the torch reference ops.

    python benchmarks/world_run.py                    # recipes/configs/world.toml, both paths
    python benchmarks/world_run.py --config recipes/configs/world_default.toml
    python benchmarks/world_run.py --smoke            # a few prompts (the test suite)

Runs the recipe twice into fresh run directories, one process each, one after the other on one
thread: `SHEEP_OPS=torch` (the reference ops: one attention call per sequence, the engine's
path before the CPU backend existed) and the default ops (`cpu`). Records the wall time of each
whole run and of each stage (every arm, every iteration), and compares every data file the two
runs wrote (prompts, responses, assessed pairs, training data), record by record: the same
decisions, or how many records float rounding changed. Writes the JSON (device, versions,
commit) to benchmarks/results/world_run-*.json and prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402

DATA_FILES = ("prompts.jsonl", "responses.jsonl", "assessed.jsonl", "train.jsonl")
BACKENDS = ("torch", "cpu")     # reference first: a warm page cache then favours it, not us
SMOKE = ["run.iterations=1", "run.controls={}", "synthesis.num_prompts=8",
         "synthesis.meta_prompts_per_round=4", "response.n=2"]


def run_recipe(config: Path, backend: str, run_dir: Path, overrides: list[str]) -> float:
    """One whole run of the recipe in its own process -> wall seconds."""
    env = {**os.environ, "SHEEP_OPS": backend, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "recipes" / "isheep_qwen.py"), "--config", str(config),
           "--run-dir", str(run_dir), *overrides]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{backend} run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return seconds


def stage_seconds(run_dir: Path) -> dict[str, dict[str, float]]:
    """'<arm>/<iteration>' -> {stage: seconds} from every manifest.json of the run."""
    out = {}
    for manifest in sorted(run_dir.rglob("manifest.json")):
        arm = manifest.parent.relative_to(run_dir).as_posix() if manifest.parent != run_dir else "main"
        for it, rec in json.loads(manifest.read_text())["iterations"].items():
            out[f"{arm}/{it}"] = {s: round(v.get("seconds", 0.0), 2) for s, v in rec["stages"].items()}
    return out


def compare_data(a: Path, b: Path) -> dict[str, int]:
    """Records of every data file of run a against the same file of run b."""
    records = differ = files = 0
    for path in sorted(a.rglob("*.jsonl")):
        if path.name not in DATA_FILES:
            continue
        rel = path.relative_to(a)
        left = path.read_text().splitlines()
        right = (b / rel).read_text().splitlines() if (b / rel).exists() else []
        files += 1
        records += max(len(left), len(right))
        differ += sum(x != y for x, y in zip(left, right)) + abs(len(left) - len(right))
    return {"files": files, "records": records, "differing_records": differ}


def generation_seconds(stages: dict[str, dict[str, float]]) -> float:
    """Seconds in the stages that run the engine (everything but fine-tuning and selection)."""
    return round(sum(sec for it in stages.values() for s, sec in it.items()
                     if s not in ("model", "train_data")), 2)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "recipes" / "configs" / "world.toml"))
    p.add_argument("--smoke", action="store_true", help="a few prompts, one iteration, no controls")
    p.add_argument("--out", help="directory for the JSON (default benchmarks/results)")
    p.add_argument("overrides", nargs="*", help="section.key=value settings for both runs")
    args = p.parse_args(argv)
    overrides = ["run.seed=0", *(SMOKE if args.smoke else []), *args.overrides]
    work = Path(tempfile.mkdtemp(prefix="world-run-"))
    results = {}
    for backend in BACKENDS:
        run_dir = work / backend
        wall = run_recipe(Path(args.config), backend, run_dir, overrides)
        stages = stage_seconds(run_dir)
        results[backend] = {"seconds": round(wall, 2), "generation_seconds": generation_seconds(stages),
                            "stages": stages}
        print(f"ops {backend:>5}: {wall:7.1f} s, engine stages {results[backend]['generation_seconds']:7.1f} s")
    ref, fast = results["torch"], results["cpu"]
    results["time_ratio"] = round(fast["seconds"] / ref["seconds"], 3)
    results["engine_stage_ratio"] = round(fast["generation_seconds"] / ref["generation_seconds"], 3)
    results["data"] = compare_data(work / "torch", work / "cpu")
    d = results["data"]
    print(f"fast ops take {results['time_ratio']:.2f} of the reference run's time "
          f"({results['engine_stage_ratio']:.2f} of its engine stages); data files: "
          f"{d['differing_records']} of {d['records']} records differ ({d['files']} files)")
    config = Path(args.config).resolve()
    shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    path = write_results("world_run", results, out_dir=args.out, config=str(shown),
                         overrides=overrides, threads=1)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
