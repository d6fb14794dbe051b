import random

import pytest

from engine.world.families import FAMILIES
from engine.world.measure import (JudgeItem, assessed_pairs_judge_auc, heldout_accuracy, judge_accuracy, judge_items,
                                  kept_pair_correctness, pair_correctness)
from engine.world.tasks import WorldTask, check, held_out_tasks, wrong_output

TASKS = held_out_tasks(6, seed=0)
ANSWER = {t.prompt: t.output for t in TASKS}
FAMILY = {t.prompt: t.family for t in TASKS}


def test_heldout_accuracy_of_scripted_models():
    oracle = heldout_accuracy(lambda prompts: [ANSWER[p] for p in prompts], TASKS)
    assert oracle == {**{f: 1.0 for f in FAMILIES}, "overall": 1.0}
    silent = heldout_accuracy(lambda prompts: ["" for _ in prompts], TASKS)
    assert set(silent.values()) == {0.0}
    # right on add and reverse only: 2 of 9 families
    partial = heldout_accuracy(
        lambda prompts: [ANSWER[p] if FAMILY[p] in ("add", "reverse") else "no idea"
                         for p in prompts], TASKS)
    assert partial["add"] == partial["reverse"] == 1.0 and partial["multiply"] == 0.0
    assert partial["overall"] == pytest.approx(2 / 9)


def test_heldout_accuracy_cleans_like_the_loop_and_can_forgive_trailing_text():
    ends_turn = heldout_accuracy(lambda ps: [f" {ANSWER[p]}<|endoftext|>junk" for p in ps], TASKS)
    assert ends_turn["overall"] == 1.0
    rambles = lambda ps: [ANSWER[p] + "\nWhat is 2 plus 2?\n4" for p in ps]
    assert heldout_accuracy(rambles, TASKS)["overall"] == 0.0
    assert heldout_accuracy(rambles, TASKS, first_line_only=True)["overall"] == 1.0


def test_heldout_accuracy_refuses_a_short_answer_list():
    with pytest.raises(ValueError, match="generate_fn returned 1 results for 54 inputs"):
        heldout_accuracy(lambda prompts: ["1"], TASKS)


ITEMS = judge_items(TASKS[:20], seed=0)


def _scorer(rule):
    return lambda triples: [rule(check(*t)) for t in triples]


def test_judge_items_pair_a_right_and_a_wrong_answer_per_task():
    assert len(ITEMS) == 40 and [i.correct for i in ITEMS[:4]] == [True, False, True, False]
    assert all(check(i.instruction, i.input, i.response) is i.correct for i in ITEMS)


def test_judge_accuracy_of_scripted_judges():
    perfect = judge_accuracy(_scorer(lambda ok: 10 if ok else 2), ITEMS)
    assert perfect == {"accuracy": 1.0, "auc": 1.0, "unparsed": 0.0, "mean_correct": 10.0,
                       "mean_wrong": 2.0, "kept_correct": 1.0}
    inverted = judge_accuracy(_scorer(lambda ok: 1 if ok else 9), ITEMS)
    assert inverted["accuracy"] == 0.0 and inverted["auc"] == 0.0
    assert inverted["kept_correct"] == 0.0
    constant = judge_accuracy(_scorer(lambda ok: 9), ITEMS)
    assert constant["accuracy"] == 0.5 and constant["auc"] == 0.5
    silent = judge_accuracy(_scorer(lambda ok: None), ITEMS)
    assert silent["unparsed"] == 1.0 and silent["accuracy"] == 0.5   # every wrong one dropped
    assert silent["auc"] is None and silent["kept_correct"] is None


def test_judge_auc_counts_ties_as_half():
    items = [JudgeItem("i", "", "r", c) for c in (True, True, False, False)]
    scores = iter([9, 5, 5, 1])      # pairs (9,5) (9,1) (5,5) (5,1): 3 wins + 1 tie
    result = judge_accuracy(lambda triples: [next(scores) for _ in triples], items, threshold=8)
    assert result["auc"] == pytest.approx(3.5 / 4)
    assert result["accuracy"] == pytest.approx(3 / 4)     # 5 for a right answer is below 8


def _record(task: WorldTask, right: bool, key: str = "output") -> dict:
    return {"instruction": task.instruction, "input": task.input,
            key: task.output if right else wrong_output(task, random.Random(0))}


def test_kept_pair_correctness_counts_verifiable_right_pairs():
    t = TASKS
    kept = [_record(t[0], True), _record(t[10], True, "response"), _record(t[20], False),
            {"instruction": "Write a poem about rain.", "input": "", "output": "Drip."}]
    answered = kept + [_record(t[30], False), _record(t[40], False)]
    result = kept_pair_correctness(kept, answered)
    assert result["kept"]["n"] == 4 and result["kept"]["verifiable"] == 3
    assert result["kept"]["correct_share"] == pytest.approx(2 / 3)
    assert result["kept"]["verifiable_share"] == 0.75
    assert result["answered"]["correct_share"] == pytest.approx(2 / 5)
    assert result["lift"] == pytest.approx(2 / 3 - 2 / 5)
    assert result["kept"]["by_family"][t[0].family] == 1.0
    assert kept_pair_correctness(kept).keys() == {"kept"}


def _assessed(task, right, scores, key="logprob_scores"):
    response = task.output if right else wrong_output(task, random.Random(0))
    return {"instruction": task.instruction, "input": task.input, "response": response,
            key: scores}


def test_assessed_pairs_judge_auc_ranks_the_lowest_score_against_the_checker():
    t = TASKS
    records = [_assessed(t[0], True, {"quality": 9.0, "following": 7.0}),    # pair score 7
               _assessed(t[1], True, {"quality": 6.0, "following": 8.0}),    # 6
               _assessed(t[2], False, {"quality": 6.5, "following": 9.5}),   # 6.5
               _assessed(t[3], False, {"quality": 2.0, "following": 2.0}),   # 2
               _assessed(t[4], False, {"quality": None, "following": 9.0}),  # unscored
               {"instruction": "Tell a joke.", "input": "", "response": "No.",
                "logprob_scores": {"quality": 1.0}}]                         # not verifiable
    result = assessed_pairs_judge_auc(records)
    # right {7, 6} against wrong {6.5, 2}: 7 beats both, 6 beats 2 only -> 3 of 4
    assert result == {"auc": 0.75, "right": 2, "wrong": 2, "unscored": 1}
    # the sampled scores decide when a record has both, as they do in the loop
    both = [dict(r, scores={"quality": 10 - i}) for i, r in enumerate(records[:4])]
    assert assessed_pairs_judge_auc(both)["auc"] == 1.0
    assert assessed_pairs_judge_auc(records[:2])["auc"] is None
    with pytest.raises(ValueError, match=r"assessed_records\[0\]: no 'scores'"):
        assessed_pairs_judge_auc([{"instruction": "x", "response": "y"}])


def test_pair_correctness_of_nothing_verifiable_and_of_bad_records():
    empty = pair_correctness([{"instruction": "Tell a joke.", "output": "No."}])
    assert empty["verifiable"] == 0 and empty["correct_share"] is None
    with pytest.raises(ValueError, match=r"kept_records\[1\]: record has no 'output'"):
        kept_pair_correctness([_record(TASKS[0], True), {"instruction": "x", "answer": "y"}])
    assert pair_correctness([])["n"] == 0 and pair_correctness([])["verifiable_share"] is None


def test_task_list_quality_counts_items_as_the_loop_parses_them():
    from engine.selfalign.synthesis import format_example_block
    from engine.world.corpus import as_seed
    from engine.world.measure import task_list_quality
    from engine.world.tasks import sample_task

    rng = random.Random(0)
    tasks = [sample_task(rng) for _ in range(3)]
    # what the model writes after "6. Instruction:": two world tasks, then a third cut short
    good = (format_example_block(6, as_seed(tasks[0], "a"))
            + format_example_block(7, as_seed(tasks[1], "b")))[len("###\n6. Instruction:"):]
    not_world = " Name three colors of the rainbow.\n6. Input:\n<noinput>\n"
    results = task_list_quality([(good + "###\n8. Instruction: Add", "length"),
                                 (not_world, "stop"), ("no list at all", "stop")])
    assert results["meta_prompts"] == 3 and results["items"] == 3
    assert results["recognized"] == 2 and results["recognized_share"] == pytest.approx(2 / 3)
    assert results["parsed_share"] == pytest.approx(2 / 3)
    assert results["passes_filters"] == 3
    assert sum(results["by_family"].values()) == 2
    assert results["heldout_side"] == 0        # sample_task draws from the training side
    with pytest.raises(ValueError, match="no continuations"):
        task_list_quality([])
