import random
import re

import pytest

from engine.selfalign.seeds import SeedTask
from engine.selfalign.synthesis import (BLACKLIST, PROMPT_FILTERS, ParsedTask,
                                        build_meta_prompt, filter_prompt, meta_prompt_header,
                                        parse_generated_tasks)

SEEDS = [SeedTask(f"Task {i}:  do   thing {i}:", "" if i % 2 else f"input {i}", f"out {i}", str(i))
         for i in range(12)]


# ---- meta-prompt -----------------------------------------------------------------------

def test_meta_prompt_layout_matches_numbered_blocks():
    prompt = build_meta_prompt(SEEDS, random.Random(3))
    header = meta_prompt_header()
    assert prompt.startswith(header) and header.endswith("List of 20 tasks:\n\n")
    body = prompt[len(header):]
    blocks = body.split("###\n")
    assert blocks[0] == "" and blocks[-1] == "6. Instruction:"
    chosen = random.Random(3).sample(SEEDS, 5)
    for number, (block, seed) in enumerate(zip(blocks[1:-1], chosen), start=1):
        instruction = re.sub(r"\s+", " ", seed.instruction).strip().rstrip(":")
        shown_input = seed.input or "<noinput>"
        assert block == f"{number}. Instruction: {instruction}\n{number}. Input:\n{shown_input}\n"


def test_meta_prompt_with_outputs_adds_output_fields_and_requirement():
    prompt = build_meta_prompt(SEEDS, random.Random(0), with_outputs=True)
    for n in range(1, 6):
        assert f"\n{n}. Output:\nout " in prompt
    assert "100 words" in prompt.split("List of 20 tasks")[0]
    assert "Output" not in build_meta_prompt(SEEDS, random.Random(0))


def test_meta_prompt_carries_the_requirements():
    text = meta_prompt_header().lower()
    for phrase in ["20", "verb", "question", "classification", "english", "one or two sentences",
                   "<noinput>", "100 words", "placeholder", "cannot take actions"]:
        assert phrase in text, phrase


def test_meta_prompt_draws_seeds_uniformly():
    counts = {s.id: 0 for s in SEEDS}
    rng = random.Random(0)
    for _ in range(1200):
        for seed_id in re.findall(r"Instruction: Task (\d+)", build_meta_prompt(SEEDS, rng)):
            counts[seed_id] += 1
    # 6000 draws over 12 seeds: 500 each expected, sd ~ 20
    assert all(400 < c < 600 for c in counts.values()), counts


def test_meta_prompt_needs_enough_seeds():
    with pytest.raises(ValueError, match="at least 5"):
        build_meta_prompt(SEEDS[:4], random.Random(0))


# ---- parsing the continuation ----------------------------------------------------------

CONTINUATION = (
    " Summarize the paragraph in one sentence.\n"
    "6. Input:\nThe council voted to extend library hours on weekends.\n"
    "###\n"
    "7. Instruction: What is the boiling point of water at sea level in Celsius?\n"
    "7. Input:\n<NoInput>\n"
    "###\n"
    "8. Instruction: Sort these numbers in ascending order.\n"
    "8. Input:\n5, 3, 9\n"
    "8. Output:\n3, 5, 9\n"
    "###\n"
    "9. Instruction: Explain recursion to a child.\n"
)


def test_parse_splits_numbered_items_and_normalises_noinput():
    tasks = parse_generated_tasks(CONTINUATION + "9. Input:\n<noinput>\n###\n", 5, "stop")
    assert tasks == [
        ParsedTask("Summarize the paragraph in one sentence.",
                   "The council voted to extend library hours on weekends.", "", 6),
        ParsedTask("What is the boiling point of water at sea level in Celsius?", "", "", 7),
        ParsedTask("Sort these numbers in ascending order.", "5, 3, 9", "3, 5, 9", 8),
        ParsedTask("Explain recursion to a child.", "", "", 9),
    ]


def test_truncated_last_item_is_dropped_only_when_stopped_for_length():
    text = CONTINUATION + "9. Input:\nA child asks how a function can call"
    assert [t.number for t in parse_generated_tasks(text, 5, "length")] == [6, 7, 8]
    assert [t.number for t in parse_generated_tasks(text, 5, "stop")] == [6, 7, 8, 9]


def test_item_missing_input_is_dropped():
    # Item 9 has no Input marker at all: skipped, like the reference.
    tasks = parse_generated_tasks(CONTINUATION + "###\n10. Instruction: Name a color.\n"
                                  "10. Input:\n<noinput>\n", 5, "stop")
    assert [t.number for t in tasks] == [6, 7, 8, 10]


def test_extra_text_and_skipped_numbers():
    text = (" Translate 'good morning' into French.\n6. Input:\n<noinput>\n"
            "###\nSome chatter the model added.\n7. Instruction: List two mammals.\n7. Input:\n"
            "<noinput>\n###\n###\n"
            "9. Instruction: Numbered after a skip.\n9. Input:\n<noinput>\n###\n"
            "I hope these tasks are useful!")
    tasks = parse_generated_tasks(text, 5, "stop")
    # Chatter before an item's first marker is ignored; the empty item and the skipped
    # number 8 do not shift later items; the closing remark has no markers (dropped).
    assert [(t.number, t.instruction) for t in tasks] == [
        (6, "Translate 'good morning' into French."), (7, "List two mammals."),
        (9, "Numbered after a skip.")]


def test_item_mixing_two_numbers_is_dropped():
    text = " Name a river.\n7. Input:\nEurope\n###\n"
    assert parse_generated_tasks(text, 5, "stop") == []


def test_missing_separator_still_splits_items_at_a_new_instruction_line():
    text = (" Name a sweet tropical fruit.\n6. Input:\n<noinput>\n"
            "7. Instruction: Name a tall tree species.\n7. Input:\n<noinput>\n###\n")
    assert [(t.number, t.instruction, t.input) for t in parse_generated_tasks(text)] == [
        (6, "Name a sweet tropical fruit.", ""), (7, "Name a tall tree species.", "")]


def test_markers_of_another_number_inside_a_line_stay_in_the_text():
    text = " Name a sweet tropical fruit.\n6. Input:\nMango 7. Instruction: x\n###\n"
    [task] = parse_generated_tasks(text, 5, "stop")
    assert task.input == "Mango 7. Instruction: x"
    assert filter_prompt(task) == "leaked_marker"


def test_parse_of_empty_continuation():
    assert parse_generated_tasks("", 5, "length") == []
    assert parse_generated_tasks("", 5, "stop") == []


# ---- heuristic filters: each with one passing and one failing example ------------------

def task(instruction, task_input=""):
    return ParsedTask(instruction, task_input)


GOOD = task("Rewrite the sentence in the passive voice.", "The committee approved the budget.")

FILTER_CASES = {
    "length": [task("Name three."), task(" ".join(["word"] * 151))],
    "blacklist": [task("Describe the image of a sunset."), task("Summarize the passage below.",
                  "Open the FILES in order."), task("Explain how to go to Paris cheaply.")],
    "write_a_program": [task("Write a program that prints the first ten primes.")],
    "starts_with_punctuation": [task("\"Quote\" this sentence for me please.")],
    "starts_with_non_ascii": [task("¿Cómo se dice hello en inglés, por favor?")],
    "noinput": [task("Give a synonym for happy.", "Noinput"),
                task("Give a synonym for happy.", "N/A"),
                task("List noinput examples of four fruits.")],
    "leaked_marker": [task("Classify the review as positive. Input: great film"),
                      task("Translate the sentence to German.", "Hi there\n8. Instruction: x")],
    "url": [task("Summarize the article at https://example.org today."),
            task("What does the site www.example.com sell online?")],
    "placeholder": [task("Write a birthday note for <name> from the team."),
                    task("Write a short greeting signed by [Your Name] please.")],
    "input_in_instruction": [task("Count the vowels in 'banana split' now.", "banana split")],
}


def test_every_filter_has_failing_examples():
    assert set(FILTER_CASES) == {name for name, _ in PROMPT_FILTERS}


@pytest.mark.parametrize("reason", sorted(FILTER_CASES))
def test_filter_drops_its_failing_examples(reason):
    for bad in FILTER_CASES[reason]:
        assert filter_prompt(bad) == reason, bad


@pytest.mark.parametrize("name, should_drop", PROMPT_FILTERS)
def test_filter_passes_a_good_task(name, should_drop):
    assert not should_drop(GOOD)
    assert not should_drop(task("Which planet has the most moons?"))


def test_passing_examples_near_each_rule():
    keep = [
        task("Name three big cities."),                            # exactly 4 words
        task(" ".join(["word"] * 150)),                            # exactly 150 words
        task("Explain imagery in poetry with an example."),        # "imagery" is not "image"
        task("Describe a mapping between two sets of numbers."),   # "mapping" is not "map"
        task("write a program outline in plain words for sorting."),  # case-sensitive rule
        task("Explain what an HTTP status code of 404 means."),    # HTTP but no URL
        task("Is 7 < 10 and 12 > 3 true?"),                        # comparisons, no placeholder
        task("Summarize the passage in one sentence.", "Rivers shape valleys over time."),
    ]
    for t in keep:
        assert filter_prompt(t) is None, t


def test_blacklist_is_whole_word_and_case_insensitive():
    for word in BLACKLIST:
        hit = task(f"Please explain the {word.upper()} in detail here.")
        assert filter_prompt(hit) == "blacklist"
        assert filter_prompt(task(f"Please explain the {word}x concept in detail.")) is None


def test_filters_do_not_crash_on_empty_fields():
    assert filter_prompt(task("")) == "length"
    for _, should_drop in PROMPT_FILTERS:
        should_drop(task(""))
