"""Every benchmark's CPU smoke mode goes through the same functions as its full run: a crash
on that path fails CI (the generation, training and kernel benchmarks have tests of their
own)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _one_json(directory: Path) -> dict:
    files = list(directory.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_isheep_iteration_smoke(tmp_path):
    _run([str(ROOT / "benchmarks" / "isheep_iteration.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    data = _one_json(tmp_path)
    stages = data["results"]["stages"]
    assert {"prompts", "responses", "assessed", "train_data", "model"} <= set(stages)
    assert stages["prompts"]["counts"]["kept"] == 8 and data["environment"]["torch"]


def test_fidelity_effects_smoke(tmp_path):
    _run([str(ROOT / "benchmarks" / "fidelity_effects.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    r = _one_json(tmp_path)["results"]
    assert r["novelty_pool_run"]["parsed"] == r["novelty_pool_call"]["parsed"] > 0
    assert r["judge_greedy"]["pairs"] == r["judge_sampled"]["pairs"] > 0


def test_rouge_novelty_smoke(tmp_path):
    out = tmp_path / "rouge.json"
    _run([str(ROOT / "benchmarks" / "rouge_novelty.py"), "--smoke", "--out", str(out)], tmp_path)
    rows = json.loads(out.read_text())["results"]
    assert rows[0]["prompts"] == 200 and 0 < rows[0]["kept"] <= 200


def test_harness_benchmark_smoke(tmp_path):
    pytest.importorskip("lm_eval")
    _run([str(ROOT / "benchmarks" / "harness.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    r = _one_json(tmp_path)["results"]
    assert set(r) == {"loglikelihood", "loglikelihood_rolling", "generate_until"}
    assert all(row["sheep"]["requests_per_s"] > 0 and row["ratio_vs_best_hf"] > 0 for row in r.values())


def test_world_run_smoke(tmp_path):
    # the default world job, shrunk: both ops backends run it and make the same data
    _run([str(ROOT / "benchmarks" / "world_run.py"), "--smoke", "--config",
          str(ROOT / "recipes" / "configs" / "world_default.toml"), "--out", str(tmp_path)], tmp_path)
    r = _one_json(tmp_path)["results"]
    assert r["torch"]["stages"]["main/1"]["prompts"] > 0 and r["cpu"]["stages"]["main/1"]["prompts"] > 0
    assert r["data"]["files"] == 4 and r["data"]["records"] > 0
    assert r["data"]["differing_records"] <= 0.02 * r["data"]["records"]
    assert r["time_ratio"] == round(r["cpu"]["seconds"] / r["torch"]["seconds"], 3)
