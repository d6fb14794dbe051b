"""A short run of the real loop in the world (the shipped M_0, the default world config, made
smaller): the pairs its judge keeps are right more often than the pairs it answered, by the
truth worked out in the test from each pair's own text, on tasks the model wrote itself."""
import json
from pathlib import Path

import pytest

from engine.selfalign.loop import run_isheep
from engine.selfalign.records import read_jsonl
from engine.selfalign.settings import load_config
from world_truth import truth

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "recipes" / "configs" / "world_default.toml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("world") / "run"
    run_isheep(load_config(CONFIG, [f"run.run_dir={run_dir}", "synthesis.num_prompts=40",
                                    "synthesis.meta_prompts_per_round=12", "response.n=6"]))
    return run_dir


def test_kept_pairs_are_more_often_right_than_answered_pairs(run_dir):
    assessed = read_jsonl(run_dir / "iter_01" / "assessed.jsonl")
    right = [truth(r["instruction"], r["response"]) for r in assessed]
    kept = [ok for ok, r in zip(right, assessed) if r["keep"]]
    base = sum(right) / len(right)
    assert len(assessed) >= 60 and kept
    assert sum(kept) / len(kept) >= min(1.0, 1.5 * base)
    train = read_jsonl(run_dir / "iter_01" / "train.jsonl")
    per_prompt = {}
    for r in assessed:
        if r["keep"]:
            per_prompt[r["prompt_id"]] = per_prompt.get(r["prompt_id"], 0) + 1
    assert len(train) == sum(min(2, n) for n in per_prompt.values())   # training.max_per_prompt


def test_eval_json_holds_the_world_measures(run_dir):
    for path in (run_dir / "base_eval.json", run_dir / "iter_01" / "eval.json"):
        world = json.loads(path.read_text())["world"]
        for group in ("practised", "unseen"):
            a = world["heldout"][group]
            assert {"accuracy", "stderr", "n", "per_family"} <= set(a) and a["n"] > 0
    data = json.loads((run_dir / "iter_01" / "eval.json").read_text())["world"]["data"]
    assessed = read_jsonl(run_dir / "iter_01" / "assessed.jsonl")
    assert data["judge"]["n"] == len(assessed)
    assert "world" in (run_dir / "report.md").read_text().lower()
