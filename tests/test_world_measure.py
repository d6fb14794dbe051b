"""Plain measures: accuracy with its standard error, and a judge's precision and recall."""
import math

import pytest

from engine.world.measure import accuracy, group_accuracy, judge_quality


def test_accuracy_and_binomial_stderr():
    a = accuracy([True, True, True, False])
    assert a == {"accuracy": 0.75, "stderr": round(math.sqrt(0.75 * 0.25 / 4), 4), "n": 4}
    assert accuracy([]) == {"accuracy": None, "stderr": None, "n": 0}


def test_group_accuracy_breaks_down_by_family():
    g = group_accuracy([("factor", True), ("factor", False), ("code", True)])
    assert g["accuracy"] == round(2 / 3, 4) and g["n"] == 3
    assert g["per_family"]["factor"]["accuracy"] == 0.5
    assert g["per_family"]["code"] == {"accuracy": 1.0, "stderr": 0.0, "n": 1}


def test_judge_quality_by_hand():
    right = [True, True, False, False, False, True]
    kept = [True, False, True, False, False, True]
    q = judge_quality(right, kept)
    # kept: 3 (2 right) -> precision 2/3; right: 3 (2 kept) -> recall 2/3; agree 4/6
    assert q["precision"] == round(2 / 3, 4) and q["recall"] == round(2 / 3, 4)
    assert q["accuracy"] == round(4 / 6, 4) and q["base_rate"] == 0.5
    assert judge_quality([False], [False])["precision"] is None
    with pytest.raises(ValueError):
        judge_quality([True], [])
