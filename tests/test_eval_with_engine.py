"""The evaluation CLI on a real engine.LLM (the tiny random preset), not a fake."""
import json

from engine.eval.__main__ import main
from engine.eval.ifeval import read_ifeval_data
from engine.presets import write_tiny


def test_generate_and_score_runs_the_real_engine_and_rescoring_agrees(tmp_path):
    model = write_tiny(tmp_path / "m")
    out, responses = tmp_path / "metrics.json", tmp_path / "responses.jsonl"
    assert main(["generate-and-score", "--model", str(model), "--max-tokens", "8", "--out", str(out),
                 "--responses-out", str(responses)]) == 0
    metrics = json.loads(out.read_text())
    lines = [json.loads(x) for x in responses.read_text().splitlines()]
    assert len(lines) == len(read_ifeval_data(None)) == metrics["num_prompts"]
    # scoring the written responses again through the `ifeval` command gives the same numbers
    again = tmp_path / "again.json"
    assert main(["ifeval", "--responses", str(responses), "--out", str(again)]) == 0
    rescored = json.loads(again.read_text())
    for key in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
                "inst_level_loose_acc"):
        assert 0.0 <= metrics[key] <= 1.0
        assert rescored[key] == metrics[key]
