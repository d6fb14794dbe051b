"""One small iteration of the loop in the toy world (world.toml on the shipped base model):
the checker's measures land in the run directory and the report, and agree with the files."""
from pathlib import Path

import pytest

from engine.selfalign.loop import run_isheep
from engine.selfalign.records import read_jsonl
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.settings import load_config
from engine.world.measure import assessed_pairs_judge_auc, pair_correctness

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "recipes" / "configs" / "world.toml"
SMALL = ["run.iterations=1", "synthesis.num_prompts=24", "synthesis.meta_prompts_per_round=12",
         "world.heldout_per_family=2", "training.overrides.epochs=1",
         f"run.model={ROOT / 'engine' / 'world' / 'data' / 'base_model'}",
         f"synthesis.seeds_file={ROOT / 'engine' / 'world' / 'data' / 'seeds.jsonl'}"]


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("world") / "run"
    run_isheep(load_config(WORLD, SMALL + [f"run.run_dir={run_dir}"]))
    return run_dir


def test_world_measures_of_m0_and_m1_are_in_the_manifest_and_report(world_run):
    counts = RunDirectory(world_run).all_counts()
    for it in (0, 1):
        heldout = counts[it]["world"]["heldout"]
        assert len(heldout) == 9 + 1 and 0.0 <= heldout["overall"] <= 1.0   # families, overall
    report = (world_run / "report.md").read_text()
    assert "## Toy world: what the checker says" in report
    assert "| M_0 |" in report and "| M_1 |" in report and "AUC on own pairs" in report


def test_kept_and_answered_correctness_and_judge_auc_match_the_iteration_files(world_run):
    data = RunDirectory(world_run).all_counts()[1]["world"]["data"]
    it = world_run / "iter_01"
    answered = read_jsonl(it / "responses.jsonl")
    assessed = read_jsonl(it / "assessed.jsonl")
    kept = [r for r in assessed if r["keep"]]
    assert data["answered"] == pair_correctness(answered, "answered_records")
    assert data["kept"] == pair_correctness(kept, "kept_records")
    assert data["kept"]["n"] == len(kept) and 0 < len(kept) < len(assessed)
    assert data["judge_on_pairs"] == assessed_pairs_judge_auc(assessed)
    own = data["judge_on_pairs"]
    assert own["right"] + own["wrong"] + own["unscored"] == pair_correctness(assessed)["verifiable"]
