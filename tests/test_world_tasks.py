"""The world's checker, its targets and the held-out split, against numbers computed here."""
import pytest

from engine.world.families import FAMILIES, WORDS
from engine.world.tasks import GROUPS, SPLIT, WorldTask, check, parse_task, targets_in

FACTOR, CODE = FAMILIES["factor"], FAMILIES["code"]
PRODUCTS = {a * b for a in range(2, 20) for b in range(2, 20)}


def test_factor_targets_are_the_products_of_2_to_19():
    assert FACTOR.targets == sorted(PRODUCTS)
    assert len(FACTOR.targets) == 133


@pytest.mark.parametrize("target,response,right", [
    (24, "Pair 4 and 6", True), (24, "Pair 6 and 4", True), (24, "Pair 3 and 8.", True),
    (24, " Pair 2 and 12 ", True), (24, "Pair 5 and 5", False), (24, "Pair 1 and 24", False),
    (361, "Pair 19 and 19", True), (40, "Pair 20 and 2", False), (24, "4 and 6", False),
    (24, "Pair 4 and 6 and 1", False), (24, "Result 24", False), (24, "", False)])
def test_factor_check(target, response, right):
    assert FACTOR.check(target, response).right is right


def test_factor_trace_names_the_product_and_the_target():
    assert FACTOR.check(24, "Pair 4 and 7").trace == "Product 28, target 24: wrong."
    assert FACTOR.check(24, "Pair 4 and 6").trace == "Product 24, target 24: right."


def test_code_table_is_a_bijection_of_distinct_numbers_to_the_words():
    assert sorted(CODE.code_of) == sorted(WORDS) and len(set(WORDS)) == 40
    codes = list(CODE.code_of.values())
    assert len(set(codes)) == 40 and all(20 <= c <= 99 for c in codes)
    for word, code in CODE.code_of.items():
        assert CODE.check(code, f"Word {word}").right
        assert (f"What is the code of {word}?", f"Code {code}") in CODE.forward_facts()
        other = next(w for w in WORDS if w != word)
        assert not CODE.check(code, f"Word {other}").right
    assert not CODE.check(codes[0], "Word zebra").right       # not in the table
    assert not CODE.check(codes[0], "Pair 2 and 3").right


def test_every_solution_checks_right_and_every_near_miss_wrong():
    import random
    rng = random.Random(0)
    for fam in FAMILIES.values():
        for t in fam.targets:
            assert fam.solutions(t) and all(fam.check(t, s).right for s in fam.solutions(t))
            for _ in range(3):
                assert not fam.check(t, fam.near_miss(t, rng)).right
                assert not fam.check(t, fam.malformed(rng)).right
    # the factor solutions are exactly the ordered pairs in range
    assert len(FACTOR.solutions(36)) == len([(a, b) for a in range(2, 20) for b in range(2, 20) if a * b == 36])


def test_split_partitions_every_family_in_fixed_shares():
    for name, fam in FAMILIES.items():
        groups = [SPLIT[name][t] for t in fam.targets]
        assert set(groups) == set(GROUPS)
        n = len(fam.targets)
        assert groups.count("taught") == round(n / 3)
        assert groups.count("kept_out") == round(n / 4)
    all_pairs = {p for g in GROUPS for p in targets_in(g)}
    assert len(all_pairs) == 133 + 40
    assert sum(len(targets_in(g)) for g in GROUPS) == 173      # disjoint


@pytest.mark.parametrize("instruction,inp,want", [
    ("Find two numbers whose product is 24.", "", ("factor", 24, "practice")),
    ("Find two numbers whose product is 24", "", ("factor", 24, "practice")),
    ("Give a factor pair of 36.", "", ("factor", 36, "heldout")),
    ("Find two numbers whose product is 23.", "", "target out of range"),
    ("Find two numbers whose product is 400.", "", "target out of range"),
    ("Find two numbers whose product is 24.", "x", "has an input"),
    ("Write a poem about 24.", "", "not a world task"),
    ("What is 4 times 6?", "", "not a world task"),
])
def test_parse_task(instruction, inp, want):
    got = parse_task(instruction, inp)
    if isinstance(want, str):
        assert got == want
    else:
        assert (got.family, got.target, got.phrasing) == want


def test_code_questions_parse_in_both_phrasings():
    code = CODE.code_of["cat"]
    assert parse_task(f"Find the word whose code is {code}.") == WorldTask("code", code, "practice")
    assert parse_task(f"Which word has code {code}?") == WorldTask("code", code, "heldout")
    assert check(f"Which word has code {code}?", "", "Word cat") is True
    assert check("Tell me a joke.", "", "Word cat") is None
