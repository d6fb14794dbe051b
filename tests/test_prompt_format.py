"""Prompt layouts: the release's strings, and training reading exactly what answering sends."""
import json

import pytest

from engine.presets import write_tiny
from engine.prompt_format import (REFERENCE_SYSTEM, chat_prompt, raw_prompt, render_conversation,
                                  user_content)
from engine.tokenizer import Tokenizer
from engine.training.data import DataError, load_sft_samples


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return Tokenizer.from_pretrained(write_tiny(tmp_path_factory.mktemp("tiny")))


def test_engine_layout_joins_with_one_newline():
    assert user_content("Add the numbers.", "2 and 3") == "Add the numbers.\n2 and 3"
    assert user_content("Name a color.") == "Name a color."
    assert raw_prompt("Add the numbers.", "2 and 3") == "Add the numbers.\n2 and 3\n"
    assert raw_prompt("Name a color.", "") == "Name a color.\n"


def test_reference_layout_is_the_release_strings():
    # seed_ppl/generate_output.py:34,37: "{instruction}{input}\n" and "{instruction}\n"
    assert raw_prompt("Add the numbers.", "2 and 3", "reference") == "Add the numbers.2 and 3\n"
    assert raw_prompt("Name a color.", "", "reference") == "Name a color.\n"
    # seed_ppl/generate_output_iter2.py:43: the fixed ChatML conversation, byte for byte
    assert chat_prompt(None, user_content("Add.", " 2 and 3", "reference"), "reference") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Add. 2 and 3<|im_end|>\n<|im_start|>assistant\n")
    assert REFERENCE_SYSTEM == "You are a helpful assistant."


def test_reference_chat_ignores_the_tokenizer_template_and_keeps_a_given_system(tok):
    own = chat_prompt(tok, "hi")
    assert own == tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                          add_generation_prompt=True)
    ref = chat_prompt(tok, "hi", "reference", system="Be brief.")
    assert ref.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and ref.count("system") == 1


def test_unknown_layout_is_one_clear_error(tok, tmp_path):
    with pytest.raises(ValueError, match="prompt layout must be one of"):
        raw_prompt("x", layout="alpaca")
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"instruction": "x", "output": "y"}) + "\n")
    with pytest.raises(DataError, match="prompt layout"):
        load_sft_samples([f], tok, "chat", layout="alpaca")


@pytest.mark.parametrize("layout", ["engine", "reference"])
@pytest.mark.parametrize("task_input", ["", "2 and 3"])
@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_training_reads_exactly_the_prompt_answering_sends(tok, tmp_path, layout, task_input,
                                                           prompt_format):
    """The trainer's untrained prefix is, token for token, what the loop's answer prompt
    encodes to (LLM.generate encodes a prompt with tokenizer.encode)."""
    record = {"instruction": "Add the numbers.", "input": task_input, "output": "5"}
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(record) + "\n")
    [sample] = load_sft_samples([f], tok, prompt_format, layout=layout)
    if prompt_format == "chat":
        asked = chat_prompt(tok, user_content(record["instruction"], task_input, layout), layout)
    else:
        asked = raw_prompt(record["instruction"], task_input, layout)
    prompt_ids = tok.encode(asked)
    n = sample.is_target.index(True)
    assert sample.tokens[:n] == prompt_ids
    assert tok.decode(sample.tokens[n:n + 1]) == "5"
    # and the whole rendered conversation is the layout's, with the answer after the prompt
    if prompt_format == "chat":
        messages = [{"role": "user", "content": user_content("Add the numbers.", task_input, layout)},
                    {"role": "assistant", "content": "5"}]
        assert tok.decode(sample.tokens, skip_special_tokens=False) == render_conversation(
            tok, messages, layout)


def test_the_layouts_differ_where_the_release_does(tok, tmp_path):
    record = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(record) + "\n")
    texts = {layout: tok.decode(load_sft_samples([f], tok, "chat", layout=layout)[0].tokens,
                                skip_special_tokens=False) for layout in ("engine", "reference")}
    assert "Add the numbers.\n2 and 3<|im_end|>" in texts["engine"]
    assert "user\nAdd the numbers.2 and 3<|im_end|>" in texts["reference"]
    assert texts["reference"].startswith(f"<|im_start|>system\n{REFERENCE_SYSTEM}<|im_end|>\n")
