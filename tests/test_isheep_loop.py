"""The I-SHEEP loop end to end on the tiny random model: run directory, report, resume
after a kill in the middle of a stage, and the same data under 2 ranks."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.selfalign.loop import run_isheep
from engine.selfalign.records import read_jsonl
from engine.selfalign.settings import load_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "configs" / "tiny.toml"
# smaller than the default run, same stages
SMALL = ["run.iterations=1", "synthesis.num_prompts=16", "synthesis.meta_prompts_per_round=8",
         "synthesis.max_tokens=48", "response.max_tokens=24", "generation.chunk_size=4",
         "eval.max_prompts=4", "eval.max_tokens=16", "training.overrides.seq_len=256"]


def _cfg(run_dir, extra=()):
    return load_config(TINY, SMALL + [f"run.run_dir={run_dir}", *extra])


def _final_files(run_dir: Path) -> dict:
    return {name: read_jsonl(run_dir / "iter_01" / name)
            for name in ("prompts.jsonl", "responses.jsonl", "assessed.jsonl", "train.jsonl")}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    run_isheep(_cfg(run_dir))
    return run_dir


def test_run_writes_the_run_directory_and_report(reference_run):
    d = reference_run
    manifest = json.loads((d / "manifest.json").read_text())
    stages = manifest["iterations"]["1"]["stages"]
    for name in ("prompts", "responses", "assessed", "train_data", "model", "eval"):
        assert stages[name]["status"] == "done", name
    files = _final_files(d)
    c = {k: v["counts"] for k, v in stages.items()}
    assert len(files["prompts.jsonl"]) == c["prompts"]["kept"] == 16
    assert len(files["responses.jsonl"]) == c["responses"]["prompts"] == 16
    kept_answers = [r for r in files["responses.jsonl"] if r["drop"] is None]
    assert len(files["assessed.jsonl"]) == len(kept_answers) == c["assessed"]["pairs"]
    kept_pairs = [r for r in files["assessed.jsonl"] if r["keep"]]
    assert len(files["train.jsonl"]) == len(kept_pairs) == c["train_data"]["examples"]
    # the threshold really filtered: everything kept scores above it, everything dropped not
    for r in files["assessed.jsonl"]:
        assert r["keep"] == all(v > 5.13 for v in r["logprob_scores"].values())
    assert 0 < len(kept_pairs) < len(kept_answers)
    assert c["model"]["trained"] and c["model"]["steps"] >= 1
    assert (d / "iter_01" / "model" / "model.safetensors").is_file()
    assert {"prompt_level_strict_acc", "win_rate"} <= set(json.loads((d / "iter_01" / "eval.json").read_text()))
    assert (d / "base_eval.json").is_file() and (d / "config.toml").is_file()
    report = (d / "report.md").read_text()
    assert "tiny random model" in report and "| 1 |" in report
    assert {p.name for p in (d / "plots").glob("*.png")} >= {"funnel.png", "scores.png", "loss.png", "eval.png"}
    ids = [r["id"] for r in files["responses.jsonl"]]
    assert len(ids) == len(set(ids))


def test_finished_run_is_not_redone(reference_run):
    before = (reference_run / "iter_01" / "responses.jsonl").stat().st_mtime_ns
    run_isheep(_cfg(reference_run))
    assert (reference_run / "iter_01" / "responses.jsonl").stat().st_mtime_ns == before


# Runs the recipe with each appended chunk slowed down, so the test can kill it mid-stage.
SLOW_RECIPE = """
import runpy, sys, time
import engine.selfalign.stages as stages
_append = stages.append_jsonl
def slow_append(*a, **k):
    n = _append(*a, **k)
    time.sleep(0.4)
    return n
stages.append_jsonl = slow_append
sys.argv = ["isheep_qwen.py"] + sys.argv[1:]
runpy.run_path(sys.argv[0] if False else %r, run_name="__main__")
"""


@pytest.mark.parametrize("stage_file", ["prompts.partial.jsonl", "responses.partial.jsonl"])
def test_kill_mid_stage_then_resume_gives_the_same_data(stage_file, reference_run, tmp_path):
    run_dir = tmp_path / "run"
    args = ["--config", str(TINY), "--run-dir", str(run_dir), *SMALL]
    script = SLOW_RECIPE % str(ROOT / "recipes" / "isheep_qwen.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = run_dir / "iter_01" / stage_file
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if partial.is_file() and len(partial.read_text().splitlines()) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-stage"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.is_file()
    assert not (run_dir / "iter_01" / stage_file.replace(".partial", "")).exists()

    run_isheep(_cfg(run_dir))          # resume
    got, want = _final_files(run_dir), _final_files(reference_run)
    for name in want:
        assert got[name] == want[name], name
    counts = json.loads((run_dir / "manifest.json").read_text())["iterations"]["1"]["stages"]
    ref_counts = json.loads((reference_run / "manifest.json").read_text())["iterations"]["1"]["stages"]
    for name in ("prompts", "responses", "assessed", "train_data"):
        assert counts[name]["counts"] == ref_counts[name]["counts"], name
    assert not (run_dir / "iter_01" / stage_file).exists()


def test_two_ranks_produce_the_same_data_as_one(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "recipes" / "isheep_qwen.py"), "--config", str(TINY), "--run-dir", str(run_dir),
           *SMALL, "eval.enabled=false"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    got, want = _final_files(run_dir), _final_files(reference_run)
    for name in want:
        assert got[name] == want[name], name
    assert (run_dir / "iter_01" / "model" / "model.safetensors").is_file()



def test_ablation_settings_change_what_the_loop_does(tmp_path):
    run_dir = tmp_path / "run"
    # threshold 1: every expected score is above it, so both iterations bring data
    cfg = _cfg(run_dir, ["run.iterations=2", "assessment.judge=self", "assessment.threshold=1",
                         "training.start_from=previous",
                         "training.data=cumulative", "training.method=lora", "eval.enabled=false"])
    run_isheep(cfg)
    stages = json.loads((run_dir / "manifest.json").read_text())["iterations"]
    # cumulative data: iteration 2 trains on iteration 1's kept pairs too
    train1 = read_jsonl(run_dir / "iter_01" / "train.jsonl")
    train2 = read_jsonl(run_dir / "iter_02" / "train.jsonl")
    assert train1 and {r["id"] for r in train1} < {r["id"] for r in train2}
    # from the previous model, with LoRA merged into an HF-layout export
    model2 = stages["2"]["stages"]["model"]["counts"]
    assert model2["trained"] and model2["start"].endswith("iter_01/model")
    assert (run_dir / "iter_02" / "model" / "model.safetensors").is_file()


def test_both_scorings_run_and_the_sampled_one_decides(tmp_path):
    run_dir = tmp_path / "run"
    run_isheep(_cfg(run_dir, ["assessment.mode=both", "eval.enabled=false"]))
    assessed = read_jsonl(run_dir / "iter_01" / "assessed.jsonl")
    assert assessed and all(set(r) >= {"scores", "logprob_scores", "keep", "keep_logprob"} for r in assessed)
    # a random model never writes a parseable score: the reference rule keeps nothing, while
    # the log-prob scores (kept for the comparison) would have kept some
    assert all(r["keep"] == all(v is not None and v > 5.13 for v in r["scores"].values()) for r in assessed)
    assert any(r["keep_logprob"] for r in assessed)
    counts = json.loads((run_dir / "manifest.json").read_text())["iterations"]["1"]["stages"]
    assert counts["model"]["counts"]["trained"] is False   # nothing to train on: M_1 = M_0
    assert "Sampled-and-parsed versus log-prob scoring" in (run_dir / "report.md").read_text()
