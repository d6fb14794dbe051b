"""Offline word, sentence and token counting against what IFEval's NLTK tools give."""

import re

import pytest

from engine.eval.text_units import (count_capital_words, count_sentences, count_words,
                                    split_sentences, word_tokens)

PROSE = [
    "I DON'T know, but NASA's rover (the BIG one) cannot stop.",
    'He said "GO NOW!" and left -- quickly.',
    "Prices rose 1,000% at 10:30; wow!!",
    "'Tis the SEASON's best: gonna be fun...",
    "STATE-OF-THE-ART results, e.g. on U.S. data.",
    "The “quoted” word and ‘single’ ones — dash.",
    "I'm sure they'll say you're right *really*.",
    "wanna go? lemme see.",
    "Email me@example.com or #tag $5 & more.",
    "We'd've gone [maybe] {surely} <never>.",
]


@pytest.mark.parametrize("text", PROSE + ["", "   ", "word", "It's a well-known fact: 3.14!"])
def test_word_count_is_regexp_tokenizer_count(text):
    # IFEval counts words with nltk RegexpTokenizer(r"\w+"), which is re.findall(r"\w+").
    assert count_words(text) == len(re.findall(r"\w+", text))


@pytest.mark.parametrize("text", PROSE + [" ".join(PROSE)])
def test_tokens_match_nltk_word_tokenizer(text):
    # nltk.word_tokenize = Punkt sentences, then NLTKWordTokenizer on each; Punkt's data is
    # not installable offline, so the reference runs on our sentences (tested below).
    nltk_tokenize = pytest.importorskip("nltk.tokenize")
    reference = nltk_tokenize.NLTKWordTokenizer()
    expected = [tok for sentence in split_sentences(text) for tok in reference.tokenize(sentence)]
    assert word_tokens(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("I DON'T think NASA is late.", 4),          # I, DO, N'T, NASA
    ("He CANNOT go.", 2),                        # CAN, NOT
    ("Use the AI-BASED tool, not the AI-based one.", 1),
    ("U.S. AND U.K. teams.", 3),
    ("HELLO,WORLD and 2024!", 2),
    ("lowercase only.", 0),
])
def test_capital_word_count(text, expected):
    assert count_capital_words(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("", []),
    ("  \n ", []),
    ("No final stop", ["No final stop"]),
    ("Mr. Smith went to Washington. He arrived at 3.15 p.m. on Monday.",
     ["Mr. Smith went to Washington.", "He arrived at 3.15 p.m. on Monday."]),
    ("Dr. Jones, Ph.D. and Mrs. Lee met J. Smith.", ["Dr. Jones, Ph.D. and Mrs. Lee met J. Smith."]),
    ("I like fruit, e.g. apples, i.e. red ones. Do you?",
     ["I like fruit, e.g. apples, i.e. red ones.", "Do you?"]),
    ("I live in the U.S. The weather is nice.", ["I live in the U.S.", "The weather is nice."]),
    ("Pi is 3.14159. See example.com for more.", ["Pi is 3.14159.", "See example.com for more."]),
    ('She said "Stop." Then she left! Why? (Nobody knows.) Fine.',
     ['She said "Stop."', "Then she left!", "Why?", "(Nobody knows.)", "Fine."]),
    ("Wait... what happened? Really... The end.", ["Wait... what happened?", "Really...", "The end."]),
    ("Title\n\nBody text here. Second one.", ["Title\n\nBody text here.", "Second one."]),
    ("Step 3. mix well. Done.", ["Step 3. mix well.", "Done."]),
    ("My answer is no. Here is why.", ["My answer is no.", "Here is why."]),
])
def test_sentence_split_follows_punkt_on_ordinary_prose(text, expected):
    assert split_sentences(text) == expected
    assert count_sentences(text) == len(expected)
