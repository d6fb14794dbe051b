"""The world tokenizer: byte-level BPE whose pre-tokenizer keeps every number and every word
in one piece, trained until each world number and word is a single token.

Why: checking an answer compares the forward fact's result with the target. When both are
one token the comparison is token equality; split into digits, a small model learns a
per-number prior for the verdict instead of comparing (the pilot's first failure).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer as HFTokenizer

from engine.presets import train_bpe_tokenizer
from engine.world.families import WORDS

# a number, or a word, each with its leading space; punctuation runs with their line ends;
# other whitespace
WORLD_SPLIT_PATTERN = r" ?\d+| ?[A-Za-z]+|[^\sA-Za-z\d]+[\r\n]*|\s+"
MAX_NUMBER = 400          # every number 0..MAX_NUMBER is one token (products reach 361)
VOCAB_SIZE = 2400


def single_token_pieces() -> list[str]:
    """The pieces that must be one token each: numbers and world words, with and without a
    leading space."""
    pieces = [str(n) for n in range(MAX_NUMBER + 1)] + list(WORDS)
    return pieces + [" " + p for p in pieces]


def train_world_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> HFTokenizer:
    """BPE over `texts` plus every single-token piece (a few times each, so each is merged
    whole); raises if some piece still takes more than one token."""
    pieces = single_token_pieces()
    # "." between pieces: a newline or space there would join the next piece's space
    anchor = [".".join(pieces[i:i + 50]) + ".\n" for i in range(0, len(pieces), 50)] * 8
    tok = train_bpe_tokenizer([*anchor, *texts], vocab_size, split_pattern=WORLD_SPLIT_PATTERN)
    split = [p for p in pieces if len(tok.encode(p, add_special_tokens=False).ids) != 1]
    if split:
        raise ValueError(f"world tokenizer (vocab {vocab_size}): {len(split)} pieces are not one "
                         f"token, e.g. {split[:5]}; raise the vocabulary size")
    return tok
