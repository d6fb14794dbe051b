import random

import pytest

from engine.selfalign.seeds import load_default_seeds
from engine.selfalign.response_filters import filter_response
from engine.selfalign.synthesis import ParsedTask, filter_prompt
from engine.world.families import FAMILIES, WORDS
from engine.world.tasks import (WorldTask, check, family_of, held_out_tasks, is_held_out,
                                off_task_output, raw_prompt, recognize, sample_task,
                                wrong_output)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_checker_accepts_the_right_answer_and_rejects_the_wrong_one(family):
    rng = random.Random(family)
    for _ in range(150):
        task = sample_task(rng, family, split="any")
        assert task.family == family
        assert check(task.instruction, task.input, task.output) is True, task
        wrong = wrong_output(task, rng)
        assert wrong != task.output
        assert check(task.instruction, task.input, wrong) is False, (task, wrong)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_off_task_output_answers_another_task_of_the_family(family):
    rng = random.Random(f"off-{family}")
    for _ in range(60):
        task = sample_task(rng, family)
        replay = random.Random()
        replay.setstate(rng.getstate())
        wrong = off_task_output(task, rng)
        assert check(task.instruction, task.input, wrong) is False, (task, wrong)
        # the tasks it drew from the same stream: the last is one it answers rightly
        drawn = [sample_task(replay, family) for _ in range(100)]
        source = next(d for d in drawn if d.output == wrong)
        assert check(source.instruction, source.input, wrong) is True
        assert not is_held_out(source.instruction, source.input)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_phrasing_is_sampled_and_recognized_as_its_own_family(family):
    rng = random.Random(f"phrasings-{family}")
    seen = set()
    for _ in range(400):
        task = sample_task(rng, family, split="any")
        found = recognize(task.instruction, task.input)
        assert found is not None and found.family.name == family, task
        seen.add(found.phrasing)
    assert seen == set(FAMILIES[family].phrasings)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_recognition_ignores_case_spacing_and_final_punctuation(family):
    rng = random.Random(f"variants-{family}")
    for _ in range(40):
        task = sample_task(rng, family, split="any")
        wrong = wrong_output(task, rng)
        variants = [task.instruction.lower(), "  " + task.instruction.replace(" ", "   ") + "\n",
                    task.instruction.rstrip(".?!")]
        for instruction in variants:
            assert check(instruction, task.input, task.output) is True, instruction
            assert check(instruction, task.input, wrong) is False, instruction


UNRELATED = [
    ("What is the capital of France?", ""),
    ("Write a haiku about the sea.", ""),
    ("Summarize the text below in one sentence.", "The cat sat on the mat all day."),
    ("Reverse the letters of the word below.", ""),             # needs an input
    ("Count the letter a in the word given.", ""),
    ("Rewrite the text below in upper case.", ""),
    ("Reverse the letters of the word below.", "two words"),    # input not one word
    ("Add the two numbers below.", "banana and pear"),
    ("What is 3 plus 4?", "7 and 8"),                            # takes no input
    ("What is 3 plus 4 plus 5?", ""),
    ("Sort these words alphabetically: pear, apple.", ""),
]


@pytest.mark.parametrize("instruction,task_input", UNRELATED)
def test_unrelated_instructions_are_not_verifiable(instruction, task_input):
    assert recognize(instruction, task_input) is None
    assert check(instruction, task_input, "7") is None


def test_no_default_seed_task_is_taken_for_a_world_task():
    assert all(recognize(s.instruction, s.input) is None for s in load_default_seeds())


@pytest.mark.parametrize("instruction,task_input,right,wrong", [
    ("What is 1234 plus 4321?", "", "5555", "5556"),
    ("Calculate 12+30", "", "42", "43"),
    ("Subtract 9 from 4.", "", "-5", "5"),
    ("Multiply the two numbers below.", "25 and 40", "1000", "100"),
    ("Reverse the letters of the word zebrafish.", "", "hsifarbez", "hsifarbze"),
    ("Arrange the letters of Mango alphabetically.", "", "agmno", "gamno"),
    ("How many times does the letter S appear in mississippi?", "", "4", "3"),
    ("Find the biggest of these numbers: 3, 1000, 7.", "", "1000", "7"),
    ("Convert the text below to lower case.", "Happy   BIRTHDAY", "happy birthday",
     "Happy birthday"),
    ("Write a short sentence that ends with the word spoon.", "",
     "He ate soup with a spoon.", "A spoon fell down."),
])
def test_new_values_outside_the_vocabulary_are_judged(instruction, task_input, right, wrong):
    assert check(instruction, task_input, right) is True
    assert check(instruction, task_input, wrong) is False


def test_answer_normalization_follows_each_family():
    assert check("What is 40 plus 28?", "", " 68.\n") is True
    assert check("What is 40 plus 28?", "", "68 apples") is False
    assert check("What is 40 plus 28?", "", "") is False
    assert check("Write the word garden backwards.", "", "NEDRAG") is True      # case-free
    assert check("Convert the text below to upper case.", "red apple", "RED APPLE") is True
    assert check("Convert the text below to upper case.", "red apple", "Red Apple") is False
    end = "Give me a sentence whose last word is river."
    assert check(end, "", "We sat by the river!") is True
    assert check(end, "", "river") is False                      # not a sentence
    assert check(end, "", "We sat by\nthe river.") is False      # not one line
    assert check(end, "", "The river was cold.") is False


def test_held_out_tasks_are_distinct_deterministic_and_never_drawn_for_training():
    held = held_out_tasks(40, seed=0)
    assert held == held_out_tasks(40, seed=0)
    assert held != held_out_tasks(40, seed=1)
    keys = {(t.instruction, t.input) for t in held}
    assert len(keys) == len(held) == 40 * len(FAMILIES)
    assert all(is_held_out(t.instruction, t.input) for t in held)
    assert {t.family for t in held} == set(FAMILIES)
    rng = random.Random(0)
    train = {(t.instruction, t.input) for t in (sample_task(rng) for _ in range(20000))}
    assert not train & keys
    assert not any(is_held_out(*key) for key in train)


def test_held_out_share_is_a_fifth_of_the_pairs():
    rng = random.Random(5)
    pairs = {(t.instruction, t.input) for t in (sample_task(rng, split="any") for _ in range(5000))}
    share = sum(is_held_out(*p) for p in pairs) / len(pairs)
    assert 0.17 < share < 0.23


def test_asking_for_more_held_out_tasks_than_exist_fails_clearly():
    with pytest.raises(ValueError, match="fewer than 200 distinct held-out tasks"):
        held_out_tasks(200, seed=0)


def test_world_tasks_pass_the_loops_prompt_and_response_filters():
    rng = random.Random(11)
    for _ in range(3000):
        task = sample_task(rng, split="any")
        assert filter_prompt(ParsedTask(task.instruction, task.input)) is None, task
        assert filter_response(task.prompt, task.output) is None, task


def test_raw_prompt_is_the_loops_base_model_format():
    assert raw_prompt("Add 2 and 3.") == "Add 2 and 3.\n"
    assert raw_prompt("Add the two numbers below.", "2 and 3") == \
        "Add the two numbers below.\n2 and 3\n"
    assert WorldTask("add", "Add 2 and 3.", "", "5").prompt == "Add 2 and 3.\n"


def test_vocabulary_is_short_lowercase_words_without_palindromes():
    assert len(set(WORDS)) == len(WORDS) >= 80
    for word in WORDS:
        assert word.isalpha() and word.islower() and 3 <= len(word) <= 7
        assert word != word[::-1]


def test_bad_family_or_split_is_refused():
    with pytest.raises(ValueError, match="unknown family"):
        sample_task(random.Random(0), "poetry")
    with pytest.raises(ValueError, match="split must be one of"):
        sample_task(random.Random(0), split="test")
    assert family_of("What is 2 times 3?") == "multiply"
