import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.selfalign.assessment_prompts import (ASSESSMENT_KINDS, build_assessment_prompt,
                                                 score_continuations)
from engine.selfalign.scores import expected_score, parse_score

REFERENCE_CASES = [
    ("9||The answer is right.", 9),
    ("10||perfect", 10),
    (" 8 || ok", 8),
    ("\n\n7", 7),
    ("9/10 because it is clear", 9),
    ("**9**||bold", 9),
    ("'6'||quoted", 6),
    ("8.5||half", 8),        # round half to even, as Python's round
    ("9.5||half", 10),
    ("10.4||", 10),
    ("0.6||", 1),
    ("0.4||", None),
    ("0||", None),
    ("11||too high", None),
    ("100", None),
    ("Score: 9||x", None),   # text before the number
    ("The score is 9", None),
    ("", None),
    ("||9", 9),              # "||" is leading junk too
    ("-3||", 3),             # "-" is leading junk to the reference, so this reads 3
    ("1" + "0" * 400, None),  # float overflows to inf
    ("٩||arabic-indic nine", 9),
]

STRICT_CASES = [
    ("9||The answer is right.", 9),
    (" 9 ||x", 9),
    ("10", 10),
    ("9/10||", None),
    ("8.5||", None),
    ("**9**||", None),
    ("Score: 9||", None),
    ("0||", None),
    ("11||", None),
    ("", None),
]


@pytest.mark.parametrize("text, expected", REFERENCE_CASES)
def test_reference_rule(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize("text, expected", STRICT_CASES)
def test_strict_rule(text, expected):
    assert parse_score(text, rule="strict") == expected


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="parse rule"):
        parse_score("9", rule="loose")


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_parse_never_crashes_and_stays_in_range(text):
    for rule in ("reference", "strict"):
        score = parse_score(text, rule=rule)
        assert score is None or (type(score) is int and 1 <= score <= 10)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-5, max_value=20), st.text())
def test_integer_then_separator_parses_exactly_when_in_range(n, explanation):
    text = f"{n}||{explanation}"
    expected = n if 1 <= n <= 10 else None
    assert parse_score(text, rule="strict") == expected
    assert parse_score(text) == (abs(n) if 1 <= abs(n) <= 10 else None)


def test_expected_score_is_softmax_expectation():
    lps = {n: math.log(w) for n, w in zip(range(1, 11), [1, 1, 1, 1, 1, 1, 1, 1, 2, 1])}
    assert expected_score(lps) == pytest.approx((sum(range(1, 11)) + 9) / 11)
    assert expected_score({9: -0.1, 10: -math.inf}) == 9
    assert expected_score({n: -1000.0 - n for n in range(1, 11)}) == pytest.approx(
        sum(n * math.exp(-n) for n in range(1, 11)) / sum(math.exp(-n) for n in range(1, 11)))


@pytest.mark.parametrize("bad", [{}, {0: -1.0}, {11: -1.0}, {True: -1.0}, {5: math.nan},
                                 {5: math.inf}, {4: -math.inf, 5: -math.inf}])
def test_expected_score_rejects_bad_inputs(bad):
    with pytest.raises(ValueError):
        expected_score(bad)


def test_score_continuations_are_disjoint_strings():
    conts = score_continuations()
    assert sorted(conts) == list(range(1, 11))
    texts = list(conts.values())
    assert not any(a != b and b.startswith(a) for a in texts for b in texts)
    assert all(parse_score(t, rule="strict") == n for n, t in conts.items())


@pytest.mark.parametrize("kind", ASSESSMENT_KINDS)
def test_assessment_prompt_holds_task_and_asks_for_the_format(kind):
    prompt = build_assessment_prompt(kind, "Add the numbers.", "2 and 3", "5")
    assert "Instruction: Add the numbers. 2 and 3\n" in prompt
    assert "Response: 5\n" in prompt
    assert "'<score>||<explanation>'" in prompt and "1 to 10" in prompt
    assert prompt.endswith("is: ")
    no_input = build_assessment_prompt(kind, "Name a prime.", "", "7")
    assert "Instruction: Name a prime.\n" in no_input


def test_assessment_prompts_carry_their_criteria():
    quality = build_assessment_prompt("quality", "i", "", "r").lower()
    for word in ["correct", "concise", "clear", "redundancy"]:
        assert word in quality
    following = build_assessment_prompt("following", "i", "", "r").lower()
    for phrase in ["directly", "format", "clear and unambiguous", "keeps writing the instruction"]:
        assert phrase in following
    with pytest.raises(ValueError, match="assessment kind"):
        build_assessment_prompt("style", "i", "", "r")
