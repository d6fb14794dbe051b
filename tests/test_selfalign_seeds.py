import json

import pytest

from engine.selfalign.seeds import SeedFormatError, SeedTask, read_seed_tasks


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SELF_INSTRUCT = json.dumps({
    "id": "seed_task_0", "name": "antonyms", "instruction": "Give the opposite of the word.",
    "instances": [{"input": "cold", "output": "hot"}, {"input": "up", "output": "down"}],
    "is_classification": False})
FLAT = json.dumps({"instruction": "Name a prime number above 10.", "input": "", "output": "11"})


def test_reads_self_instruct_first_instance_and_flat_form(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [SELF_INSTRUCT, "", FLAT])
    assert read_seed_tasks(path) == [
        SeedTask("Give the opposite of the word.", "cold", "hot", "seed_task_0"),
        SeedTask("Name a prime number above 10.", "", "11", "line_3"),
    ]


def test_flat_form_may_omit_input_and_output(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [json.dumps({"instruction": "Say hi.", "id": 7})])
    assert read_seed_tasks(path) == [SeedTask("Say hi.", "", "", "7")]


@pytest.mark.parametrize("bad_line, message", [
    ('{"instruction": "x", "input": ', "malformed JSON"),
    ('{"input": "a", "output": "b"}', "missing 'instruction'"),
    ('{"instruction": "   "}', "'instruction' is empty"),
    ('{"instruction": 5}', "'instruction' must be a string"),
    ('{"instruction": "x", "input": ["a"]}', "'input' must be a string"),
    ('{"instruction": "x", "instances": []}', "'instances' must be a non-empty list"),
    ('{"instruction": "x", "instances": ["a"]}', r"instances\[0\] must be an object"),
    ('{"instruction": "x", "instances": [{"input": "a"}]}', "missing 'output'"),
    ('{"instruction": "x", "instances": [{"input": 1, "output": "b"}]}', "'input' must be"),
    ('{"instruction": "x", "is_classification": "yes"}', "'is_classification' must be"),
    ('["instruction"]', "expected a JSON object"),
    ('{"instruction": "x", "id": "seed_task_0"}', "already used on line 1"),
])
def test_malformed_line_error_names_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "seeds.jsonl", [SELF_INSTRUCT, FLAT, bad_line, FLAT])
    with pytest.raises(SeedFormatError, match=rf"seeds\.jsonl:3: .*{message}"):
        read_seed_tasks(path)


def test_empty_or_missing_file_is_an_error(tmp_path):
    with pytest.raises(SeedFormatError, match="no seed tasks"):
        read_seed_tasks(write_lines(tmp_path / "e.jsonl", [""]))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_seed_tasks(tmp_path / "missing.jsonl")


def test_default_seed_set_is_well_formed_diverse_and_passes_our_own_filters():
    from engine.selfalign.rouge import NoveltyFilter
    from engine.selfalign.seeds import DEFAULT_SEED_PATH, load_default_seeds
    from engine.selfalign.synthesis import ParsedTask, filter_prompt

    seeds = load_default_seeds()
    assert 170 <= len(seeds) <= 200
    with_input = sum(1 for s in seeds if s.input)
    assert 0.3 < with_input / len(seeds) < 0.7
    assert all(s.output.strip() and len(s.output.split()) < 100 for s in seeds)
    assert all(len(s.input.split()) <= 100 for s in seeds)
    assert all(filter_prompt(ParsedTask(s.instruction, s.input)) is None for s in seeds)
    # Each seed is novel against the ones before it, as generated prompts must be.
    results = NoveltyFilter().add_many_if_novel([s.instruction for s in seeds])
    assert all(r.kept for r in results), [r for r in results if not r.kept]
    raw = [json.loads(line) for line in DEFAULT_SEED_PATH.read_text(encoding="utf-8").splitlines()]
    n_classification = sum(r["is_classification"] for r in raw)
    assert 15 <= n_classification <= 40
