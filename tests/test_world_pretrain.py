"""Pretraining on world documents: the trainer's plain-text records and the shipped base model."""
import json
from pathlib import Path

import pytest

from engine.presets import write_tiny
from engine.tokenizer import Tokenizer
from engine.training.data import DataError, load_sft_samples
from engine.training.packing import IGNORE_INDEX, make_pack, to_training_samples

SHIPPED = Path(__file__).resolve().parent.parent / "engine" / "world" / "data" / "base_model"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return Tokenizer.from_pretrained(write_tiny(tmp_path_factory.mktemp("tiny")))


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("prompt_format", ["raw", "chat"])
def test_text_record_is_a_document_with_labels_on_every_token(tok, tmp_path, prompt_format):
    text = "Add 2 and 3.\n5"
    f = _write(tmp_path / "t.jsonl", [{"text": text, "kind": "answered"}])
    [s] = load_sft_samples([f], tok, prompt_format)
    eos = tok.token_to_id("<|endoftext|>")
    assert s.tokens == tok.encode(text, add_special_tokens=False) + [eos]
    assert all(s.is_target)
    [sample], _ = to_training_samples([s], seq_len=512)
    assert sample.input_ids == s.tokens[:-1]
    assert sample.labels == s.tokens[1:]        # every next token is a target, EOS included


def test_text_records_pack_together_and_mix_with_alpaca(tok, tmp_path):
    f = _write(tmp_path / "m.jsonl", [{"text": "one two"}, {"text": "three"},
                                      {"instruction": "Add 2 and 3.", "output": "5"}])
    samples = load_sft_samples([f], tok, "raw")
    train, _ = to_training_samples(samples, seq_len=64)
    pack = make_pack(train)
    assert pack.lengths == [len(s.tokens) - 1 for s in samples]
    # only the Alpaca record's prompt is unlabelled
    prompt_len = len(tok.encode("Add 2 and 3.\n"))
    unlabelled = int((pack.labels == IGNORE_INDEX).sum())
    assert unlabelled == prompt_len - 1


@pytest.mark.parametrize("bad", [{"text": ""}, {"text": 3}])
def test_bad_text_record_names_the_line(tok, tmp_path, bad):
    f = _write(tmp_path / "b.jsonl", [{"text": "fine"}, bad])
    with pytest.raises(DataError, match=r"b\.jsonl:2: 'text'"):
        load_sft_samples([f], tok, "raw")
