"""The world tokenizer keeps every number and world word one token, and loses no text."""
from pathlib import Path

import pytest

from engine.tokenizer import Tokenizer
from engine.world.corpus import CorpusSettings, corpus_documents
from engine.world.families import WORDS
from engine.world.tokenizer import train_world_tokenizer

SHIPPED = Path(__file__).resolve().parent.parent / "engine" / "world" / "data" / "base_model"


@pytest.fixture(scope="module")
def trained():
    docs = corpus_documents(CorpusSettings(n_docs=600), seed=1)
    return train_world_tokenizer(d["prompt"] + d["completion"] for d in docs)


def _pieces():
    pieces = [str(n) for n in range(401)] + list(WORDS)
    return pieces + [" " + p for p in pieces]


def test_trained_tokenizer_gives_one_token_per_number_and_word(trained):
    for piece in _pieces():
        assert len(trained.encode(piece, add_special_tokens=False).ids) == 1, piece


def test_numbers_in_a_sentence_stay_whole_and_text_round_trips(trained):
    text = "Find two numbers whose product is 361.\nPair 19 and 19"
    enc = trained.encode(text, add_special_tokens=False)
    pieces = [trained.decode([i]) for i in enc.ids]
    assert " 361" in pieces and pieces.count(" 19") == 2
    assert trained.decode(enc.ids) == text
    odd = "Ünïcode, tabs\tand 1234567 digits; ok?"
    assert trained.decode(trained.encode(odd, add_special_tokens=False).ids) == odd


def test_too_small_a_vocabulary_is_refused():
    with pytest.raises(ValueError, match="not one token"):
        train_world_tokenizer(["a b c"], vocab_size=400)


def test_shipped_model_tokenizer_is_the_world_tokenizer():
    tok = Tokenizer.from_pretrained(SHIPPED)
    for piece in _pieces():
        assert len(tok.encode(piece, add_special_tokens=False)) == 1, piece
