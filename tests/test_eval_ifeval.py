"""IFEval data reading, loose-mode variants, metric aggregation and the `ifeval` command."""

import collections
import json

import pytest

from engine.eval.__main__ import main
from engine.eval.ifeval import (IFEvalPrompt, loose_variants, match_responses, read_ifeval_data,
                                read_responses, score_ifeval, score_prompt)
from engine.eval.instructions import INSTRUCTIONS


def _write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _item(ids, kwargs, prompt="p"):
    return IFEvalPrompt(key=0, prompt=prompt, instruction_ids=tuple(ids), kwargs=tuple(kwargs))


def test_loose_variants_are_ifevals_eight_in_order():
    response = "Sure, here it is:\n*Title*\nBody **text**\nHope this helps!"
    assert loose_variants(response) == [
        response,
        "Sure, here it is:\nTitle\nBody text\nHope this helps!",
        "*Title*\nBody **text**\nHope this helps!",
        "Sure, here it is:\n*Title*\nBody **text**",
        "*Title*\nBody **text**",
        "Title\nBody text\nHope this helps!",
        "Sure, here it is:\nTitle\nBody text",
        "Title\nBody text",
    ]


@pytest.mark.parametrize("instruction_id, kwargs, response", [
    # a chatty first line breaks the quotation; dropping it passes
    ("startend:quotation", {}, 'Here you go:\n"A black hole is dense."'),
    # a trailing sign-off breaks the end phrase; dropping the last line passes
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     "See you Monday. Any other questions?\n(Let me know if this works.)"),
    # markdown bold breaks the repeated prompt; removing "*" passes
    ("combination:repeat_prompt", {"prompt_to_repeat": "Name a color."}, "**Name a color.** Blue."),
    # both: an intro line and bold inside the JSON fence
    ("detectable_format:json_format", {}, 'Here:\n```json\n{"a": "**b**"}\n```\nDone.'),
])
def test_loose_passes_where_strict_fails(instruction_id, kwargs, response):
    result = score_prompt(_item([instruction_id], [kwargs]), response)
    assert result.strict == (False,) and result.loose == (True,)


def test_loose_still_fails_a_response_no_variant_rescues():
    result = score_prompt(_item(["punctuation:no_comma"], [{}]), "One, two,\nthree, four")
    assert result.strict == (False,) and result.loose == (False,)


def test_metrics_on_hand_made_set():
    data = [
        _item(["punctuation:no_comma", "startend:quotation"], [{}, {}], "p1"),
        _item(["punctuation:no_comma"], [{}], "p2"),
        _item(["detectable_format:title", "punctuation:no_comma", "startend:quotation"],
              [{}, {}, {}], "p3"),
        _item(["startend:quotation"], [{}], "p4"),
    ]
    responses = [
        '"no commas here"',                # strict: T T        loose: T T
        "a, b",                            # strict: F          loose: F
        'Intro, here:\n"<<T>> text, more"',  # strict: T F F     loose: T F T (drop first line)
        "",                                # strict: F          loose: F (empty never follows)
    ]
    metrics, results = score_ifeval(data, responses)
    assert [r.strict for r in results] == [(True, True), (False,), (True, False, False), (False,)]
    assert [r.loose for r in results] == [(True, True), (False,), (True, False, True), (False,)]
    assert metrics["prompt_level_strict_acc"] == pytest.approx(1 / 4)
    assert metrics["inst_level_strict_acc"] == pytest.approx(3 / 7)
    assert metrics["prompt_level_loose_acc"] == pytest.approx(1 / 4)
    assert metrics["inst_level_loose_acc"] == pytest.approx(4 / 7)
    assert metrics["num_prompts"] == 4 and metrics["num_instructions"] == 7
    assert metrics["inst_strict_acc_by_id"]["punctuation:no_comma"] == pytest.approx(1 / 3)


def test_reading_input_data_drops_none_kwargs(tmp_path):
    # Hugging Face exports carry every kwargs key, None where unused.
    path = _write_jsonl(tmp_path / "input_data.jsonl", [
        {"key": 7, "prompt": "Say hi.", "instruction_id_list": ["punctuation:no_comma",
                                                                 "length_constraints:number_words"],
         "kwargs": [{"num_words": None, "relation": None},
                    {"num_words": 5, "relation": "less than", "keywords": None}]},
    ])
    [item] = read_ifeval_data(path)
    assert item.kwargs == ({}, {"num_words": 5, "relation": "less than"})
    assert item.key == 7 and item.instruction_ids[1] == "length_constraints:number_words"


@pytest.mark.parametrize("bad_line, fragment", [
    ('{"key": 1, "prompt": "x", "instruction_id_list": [', "malformed JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"key": 1, "prompt": "x", "kwargs": []}', "missing field 'instruction_id_list'"),
    ('{"key": 1, "prompt": "x", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []}',
     "1 instruction ids but 0 kwargs"),
    ('{"key": 1, "prompt": "x", "instruction_id_list": ["x:y"], "kwargs": [{}]}',
     "unknown instruction id 'x:y'"),
    ('{"key": 1, "prompt": "x", "instruction_id_list": ["keywords:existence"], "kwargs": [{}]}',
     "missing ['keywords']"),
])
def test_malformed_input_line_names_file_and_line(tmp_path, bad_line, fragment):
    good = {"key": 0, "prompt": "ok", "instruction_id_list": [], "kwargs": []}
    path = _write_jsonl(tmp_path / "data.jsonl", [good, "", bad_line])
    with pytest.raises(ValueError) as err:
        read_ifeval_data(path)
    assert f"{path}:3:" in str(err.value) and fragment in str(err.value)


def test_missing_data_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_ifeval_data(tmp_path / "nope.jsonl")


def test_responses_matching_and_errors(tmp_path):
    data = [_item([], [], "first prompt"), _item([], [], "second prompt")]
    path = _write_jsonl(tmp_path / "r.jsonl", [{"prompt": "second prompt", "response": "B"},
                                               {"prompt": "first prompt", "response": "A"}])
    assert match_responses(data, read_responses(path)) == ["A", "B"]
    with pytest.raises(KeyError, match="third prompt"):
        match_responses(data + [_item([], [], "third prompt")], read_responses(path))
    clash = _write_jsonl(tmp_path / "clash.jsonl", [{"prompt": "p", "response": "A"},
                                                   {"prompt": "p", "response": "B"}])
    with pytest.raises(ValueError, match=r"clash.jsonl:2: .*line 1"):
        read_responses(clash)
    no_response = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: "):
        read_responses(no_response)


def test_default_prompt_set_covers_every_instruction_twice():
    data = read_ifeval_data()
    counts = collections.Counter(i for item in data for i in item.instruction_ids)
    assert set(counts) == set(INSTRUCTIONS)
    assert min(counts.values()) >= 2
    assert len({item.prompt for item in data}) == len(data) >= 50
    for item in data:   # the repeated request must be part of the prompt
        for instruction_id, kwargs in zip(item.instruction_ids, item.kwargs):
            if instruction_id == "combination:repeat_prompt":
                assert item.prompt.endswith(kwargs["prompt_to_repeat"])


def test_default_prompts_state_their_settings():
    # Every number, keyword and phrase a check uses is spelled out in the prompt itself.
    languages = {"fr": "french", "es": "spanish", "de": "german", "it": "italian"}
    for item in read_ifeval_data():
        text = item.prompt.lower()
        for kwargs in item.kwargs:
            for name, value in kwargs.items():
                if name == "language":
                    expected = [languages[value]]
                elif name.endswith("relation"):
                    expected = ["at least"] if value == "at least" else ["less than", "fewer than"]
                elif name == "nth_paragraph" and value == 1:
                    expected = ["first paragraph"]
                elif isinstance(value, int):
                    expected = [str(value)]
                elif isinstance(value, list):
                    assert all(v.lower() in text for v in value), (item.key, name)
                    continue
                else:
                    expected = [value.lower()]
                assert any(e in text for e in expected), (item.key, name, value)


def test_ifeval_command_prints_and_writes_metrics(tmp_path, capsys):
    data = _write_jsonl(tmp_path / "data.jsonl", [
        {"key": 1, "prompt": "A", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 2, "prompt": "B", "instruction_id_list": ["startend:quotation"], "kwargs": [{}]},
    ])
    responses = _write_jsonl(tmp_path / "responses.jsonl", [
        {"prompt": "A", "response": "no commas"}, {"prompt": "B", "response": "Sure:\n\"quoted\""}])
    out = tmp_path / "sub" / "metrics.json"
    assert main(["ifeval", "--data", str(data), "--responses", str(responses),
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(out.read_text())
    assert printed == written
    assert written["prompt_level_strict_acc"] == 0.5 and written["inst_level_strict_acc"] == 0.5
    assert written["prompt_level_loose_acc"] == 1.0 and written["inst_level_loose_acc"] == 1.0


def test_ifeval_command_reports_missing_response(tmp_path, capsys):
    data = _write_jsonl(tmp_path / "data.jsonl", [
        {"key": 1, "prompt": "Describe a sunset.", "instruction_id_list": [], "kwargs": []}])
    responses = _write_jsonl(tmp_path / "responses.jsonl", [{"prompt": "other", "response": "x"}])
    assert main(["ifeval", "--data", str(data), "--responses", str(responses)]) == 2
    assert "Describe a sunset." in capsys.readouterr().err
