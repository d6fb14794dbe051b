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


def test_shipped_base_model_is_small_and_its_record_matches_its_weights():
    """The committed M_0 stays a few MB, its record says how it was made, and its greedy
    held-out accuracy is what the record says (recomputed with the same settings)."""

    from engine.generation import LLM
    from engine.world.measure import heldout_accuracy
    from engine.world.model_measures import greedy_answers
    from engine.world.tasks import held_out_tasks

    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) < 4 * 2**20
    record = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert record["command"].startswith("python recipes/world_pretrain.py")
    assert record["corpus"]["documents"] == sum(record["corpus"]["by_kind"].values())
    assert record["training"]["steps"] > 0 and record["training"]["final_loss"] < 1.0
    recorded = record["measures"]["heldout"]
    assert 0.05 < recorded["overall"] < 0.95          # mediocre: sometimes right
    llm = LLM(str(SHIPPED), dtype="float32", device="cpu", kv_cache_bytes=64 * 2**20,
              max_num_seqs=64, max_num_batched_tokens=4096, seed=record["seed"])
    per_family = record["measures"]["settings"]["heldout_per_family"]
    tasks = held_out_tasks(per_family, seed=record["seed"])
    now = heldout_accuracy(greedy_answers(llm), tasks)
    assert now["overall"] == pytest.approx(recorded["overall"], abs=0.02)
