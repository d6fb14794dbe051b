import pytest

from engine.selfalign.assessment_prompts import build_assessment_prompt
from engine.selfalign.scores import parse_score
from engine.selfalign.selection import choose_start_model, passes, select_training_data


@pytest.mark.parametrize("scores, level, threshold, expected", [
    ({"quality": 9, "following": 9}, "both", 8, True),
    ({"quality": 8, "following": 10}, "both", 8, False),   # strictly greater
    ({"quality": 10, "following": None}, "both", 8, False),
    ({"quality": 9}, "both", 8, False),
    ({"quality": 9, "following": 1}, "quality", 8, True),
    ({"quality": 1, "following": 9}, "following", 8, True),
    ({"quality": None, "following": 9}, "quality", 8, False),
    ({}, "none", 8, True),
    ({"quality": 7.5, "following": 7.5}, "both", 7.4, True),   # log-prob mode: floats
    ({"quality": float("nan"), "following": 9}, "both", 1, False),
])
def test_passes(scores, level, threshold, expected):
    assert passes(scores, level, threshold) is expected


def test_passes_rejects_unknown_level():
    with pytest.raises(ValueError, match="assessment level"):
        passes({"quality": 9}, "all", 8)


class ScriptedJudge:
    """Returns a fixed judge text per (kind, response), so the expected outcome is known."""

    def __init__(self, script):
        self.script = script
        self.prompts = []

    def __call__(self, kind, pair):
        self.prompts.append(build_assessment_prompt(kind, pair["instruction"], pair["input"],
                                                    pair["output"]))
        return self.script[pair["id"]][kind]


def test_scripted_judge_filtering_keeps_exactly_the_expected_pairs():
    script = {
        "a": {"quality": "9||good", "following": "10||direct"},          # keep
        "b": {"quality": "8||fine", "following": "10||direct"},          # quality not > 8
        "c": {"quality": "9||good", "following": "I think 9"},           # unparseable
        "d": {"quality": "10", "following": " 9/10 follows well"},        # keep (reference rule)
        "e": {"quality": "11||too high", "following": "9||"},            # out of range
        "f": {"quality": "9.5||", "following": "8.5||"},                  # 10 and 8 (half-even)
    }
    pairs = [{"id": k, "instruction": f"task {k}", "input": "", "output": f"answer {k}"}
             for k in script]
    judge = ScriptedJudge(script)
    for level, expected in [("both", ["a", "d"]), ("quality", ["a", "c", "d", "f"]),
                            ("following", ["a", "b", "d", "e"]),
                            ("none", ["a", "b", "c", "d", "e", "f"])]:
        kept = []
        for pair in pairs:
            scores = {kind: parse_score(judge(kind, pair)) for kind in ("quality", "following")}
            if passes(scores, level, threshold=8):
                kept.append(pair["id"])
        assert kept == expected, level
    assert "Response: answer a" in judge.prompts[0]


RECORDS = {
    1: [{"id": "it01-000000"}, {"id": "it01-000001"}],
    3: [{"id": "it03-000000"}],
    2: [{"id": "it02-000000"}, {"id": "it01-000001"}],   # a repeated id is taken once
}


def test_select_latest_takes_only_the_newest_iteration():
    assert select_training_data(RECORDS, "latest") == [{"id": "it03-000000"}]


def test_select_cumulative_takes_all_iterations_oldest_first_without_repeats():
    assert [r["id"] for r in select_training_data(RECORDS, "cumulative")] == [
        "it01-000000", "it01-000001", "it02-000000", "it03-000000"]


def test_select_edge_cases():
    assert select_training_data({}, "cumulative") == []
    with pytest.raises(ValueError, match="data mode"):
        select_training_data(RECORDS, "all")


def test_choose_start_model(tmp_path):
    base, prev = tmp_path / "base", tmp_path / "iter_01" / "model"
    base.mkdir()
    prev.mkdir(parents=True)
    assert choose_start_model("base", base, prev) == base
    assert choose_start_model("previous", base, prev) == prev
    assert choose_start_model("previous", base, None) == base     # first iteration
    with pytest.raises(FileNotFoundError, match="iter_02"):
        choose_start_model("previous", base, tmp_path / "iter_02")
    with pytest.raises(ValueError, match="start mode"):
        choose_start_model("latest", base, prev)
