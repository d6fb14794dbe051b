import json

import pytest
import torch

from engine import Tokenizer, load_model
from engine.model import CausalLM
from engine.world.base_model import (WORLD_SIZES, world_config, world_tokenizer,
                                     write_world_base_dir)
from engine.world.corpus import corpus_documents
from engine.world.tasks import held_out_tasks


def eot_id(tok):
    return tok.token_to_id("<|endoftext|>")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return write_world_base_dir(tmp_path_factory.mktemp("world") / "base", seed=0, size="test",
                                tokenizer_docs=600)


def test_base_dir_loads_like_a_checkpoint_and_runs_on_world_prompts(base_dir):
    model = load_model(base_dir, dtype=torch.float32)
    tok = Tokenizer.from_pretrained(base_dir)
    cfg = json.loads((base_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["max_position_embeddings"] == 512
    assert cfg["vocab_size"] == tok.vocab_size == 1500
    eot = tok.token_to_id("<|endoftext|>")
    assert tok.eos_token_ids == sorted([eot, tok.token_to_id("<|im_end|>")])
    assert tok.token_to_id("<|im_start|>") is not None
    ids = tok.encode(held_out_tasks(1)[0].prompt)
    logits = model(torch.tensor([ids]))
    assert logits.shape == (1, len(ids), 1500) and torch.isfinite(logits).all()
    chat = tok.apply_chat_template([{"role": "user", "content": "Add 2 and 3."}],
                                   add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n")


def test_world_tokenizer_round_trips_documents_and_keeps_digits_apart(base_dir):
    tok = Tokenizer.from_pretrained(base_dir)
    for doc in corpus_documents(60, seed=9):
        assert tok.decode(tok.encode(doc["text"])) == doc["text"]
    assert tok.encode("<|endoftext|>", add_special_tokens=False) == [eot_id(tok)]
    pieces = [tok.decode([i]) for i in tok.encode("What is 123 plus 45?")]
    assert "1" in pieces and "123" not in pieces          # digits one by one, as in Qwen2
    assert len(tok.encode(" garden")) == 1                # vocabulary words are single tokens


def test_world_tokenizer_training_is_deterministic():
    first, second = world_tokenizer(n_docs=300, seed=2), world_tokenizer(n_docs=300, seed=2)
    assert first.to_str() == second.to_str()


def test_world_sizes_are_small_models():
    params = {}
    for size in ("small", "base"):
        cfg = world_config(1500, [0, 2], size)
        with torch.device("meta"):
            params[size] = sum(p.numel() for p in CausalLM(cfg).parameters())
    assert 0.5e6 < params["small"] < 2e6 and 2e6 < params["base"] < 6e6
    assert set(WORLD_SIZES) >= {"test", "small", "base"}
    with pytest.raises(ValueError, match="size must be one of"):
        world_config(1500, [0], "huge")
