"""benchmarks/training.py --smoke: the GPU benchmark's functions on the CPU, so a crash in them
(like calling a private ops function with the wrong arguments) fails the suite."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_training_benchmark_smoke_runs_both_sides_on_the_same_tokens(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "benchmarks/training.py", "--smoke", "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "training-cpu-smoke.json").read_text())
    assert payload["environment"]["git_commit"] and payload["measured_steps"] == 2
    [row] = payload["results"]
    engine, plain = row["engine"], row["transformers"]
    assert "error" not in engine and "error" not in plain
    # same data, same packs, same measured steps: the two sides count the same real tokens
    assert engine["tokens"] == plain["tokens"] > 0 and engine["steps"] == plain["steps"] == 2
    # the same random model on the same first batch: fp32 on the CPU, the first losses agree
    assert abs(engine["first_loss"] - plain["first_loss"]) < 1e-4 * plain["first_loss"]
    assert len(engine["losses"]) == 2 and all(0 < loss < 20 for loss in engine["losses"])
    assert row["speedup_tokens_per_s"] == engine["tokens_per_s"] / plain["tokens_per_s"]
    assert engine["process_group"] == "gloo" and engine["mfu"] is None     # no MFU peak on a CPU
