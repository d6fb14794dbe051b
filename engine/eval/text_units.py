"""Words, sentences and tokens the way IFEval counts them, without NLTK data.

IFEval counts with three NLTK tools; this module reproduces each one offline:

* ``count_words``: IFEval uses ``RegexpTokenizer(r"\\w+")``, i.e. the number of maximal runs
  of word characters. That is a plain regex, so the count here is exact.
* ``count_sentences``: IFEval uses the pre-trained English Punkt model, which needs a data
  download. ``split_sentences`` imitates Punkt's decisions on ordinary prose: a sentence ends
  at ``.``, ``?`` or ``!`` (optionally followed by closing quotes or brackets) that is
  followed by whitespace, except after a known abbreviation (Mr., Dr., e.g., i.e., U.S.,
  etc.), a single-letter initial (J. Smith) or an ellipsis, unless the next word is a
  capitalised frequent sentence starter (The, He, We, ...); an ordinal or list number
  ("3.") ends a sentence unless a lowercase word follows. Decimals ("3.14") and dotted
  names ("example.com") never split because no whitespace follows the dot.
  Known differences from Punkt: Punkt's abbreviation, collocation and orthographic tables
  are learned from a corpus and are larger than the short lists here, so rare
  abbreviations ("Adm.", "Calif.") end a sentence here but may not in Punkt; Punkt also
  consults how often the next word was seen capitalised mid-sentence, which we replace
  with the fixed starter list.
* ``word_tokens`` (used by ``change_case:capital_word_frequency``): IFEval uses
  ``nltk.word_tokenize``, i.e. Punkt sentences, then the Treebank-style NLTK word
  tokenizer on each. ``word_tokens`` applies the same splitting rules (quotes, punctuation,
  brackets, double dashes, clitics such as n't/'s/'ll, and can|not, gon|na, ...) to the
  sentences of ``split_sentences``; tests compare it token-for-token with NLTK's tokenizer.
  Hyphenated words stay one token ("STATE-OF-THE-ART" is one capital word), and clitics
  split ("DON'T" is "DO" + "N'T", two capital words).
"""

from __future__ import annotations

import re

_WORD_RUN = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Number of maximal runs of word characters (``\\w+``), as IFEval counts words."""
    return len(_WORD_RUN.findall(text))


# --- sentences -------------------------------------------------------------------------

# Lowercased, without the final period. Dotted short forms (u.s, e.g, ph.d) are recognised
# by shape as well, see _is_abbreviation.
# Words that often end a sentence themselves ("no", "sat", "sun", "wed") are left out.
_ABBREVIATIONS = frozenset("""
    mr mrs ms dr prof st jr sr rev gov capt lt sgt mt ft
    inc ltd co corp bros llc dept univ assn
    vs etc cf al viz approx
    jan feb apr jun jul aug sep sept oct nov dec
    mon tue tues thu thur thurs fri
    vol pp fig figs
""".split())
_DOTTED_INITIALISM = re.compile(r"^(?:[a-z]{1,2}\.)+[a-z]{1,2}$")   # u.s, e.g, ph.d

# Capitalised words that make Punkt end a sentence even after an abbreviation or ellipsis.
_SENTENCE_STARTERS = frozenset("""
    the a an i he she it they we you this that these those there their our his her its my
    but however in on at for if when while after before as so then also yet still
    mr mrs ms dr prof
""".split())

_CLOSERS = "\"')]}’”»"
_OPENERS = "\"'([{‘“«"
_SENTENCE_END = re.compile(r"[.?!]+$")


def _is_abbreviation(core: str) -> bool:
    core = core.lower()
    return (core in _ABBREVIATIONS or core.split("-")[-1] in _ABBREVIATIONS
            or bool(_DOTTED_INITIALISM.match(core)))


def _starts_sentence(word: str) -> bool:
    word = word.lstrip(_OPENERS)
    return bool(word) and word[0].isupper() and word.rstrip(".,;:!?").lower() in _SENTENCE_STARTERS


def _ends_sentence(token: str, next_token: str) -> bool:
    """Whether a sentence ends after ``token`` given the following whitespace-separated token."""
    bare = token.rstrip(_CLOSERS)
    end = _SENTENCE_END.search(bare)
    if not end:
        return False
    marks = end.group()
    if "?" in marks or "!" in marks:
        return True
    core = bare[: end.start()].lstrip(_OPENERS)
    if len(marks) > 1 or _is_abbreviation(core):        # ellipsis or abbreviation
        return _starts_sentence(next_token)
    if len(core) == 1 and core.isalpha():                # initial: "J. Smith"
        return False
    if core.replace(",", "").replace(".", "").isdigit():  # ordinal / list number: "3."
        first = next_token.lstrip(_OPENERS)[:1]
        return not first.islower()
    return True


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, imitating NLTK's English Punkt model (see module doc).

    Whitespace (including newlines) inside a sentence is kept as written; an empty or
    whitespace-only text has no sentences.
    """
    pieces = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    sentences, start = [], None
    for i, (begin, end) in enumerate(pieces):
        if start is None:
            start = begin
        last = i == len(pieces) - 1
        if last or _ends_sentence(text[begin:end], text[pieces[i + 1][0]:pieces[i + 1][1]]):
            sentences.append(text[start:end])
            start = None
    return sentences


def count_sentences(text: str) -> int:
    """Number of sentences, as IFEval's Punkt-based ``count_sentences`` would count them."""
    return len(split_sentences(text))


# --- Treebank-style word tokens --------------------------------------------------------

# Each rule is (pattern, replacement), applied in order, as the Treebank tokenizer does.
_OPENING_QUOTE_RULES = [
    (re.compile(r"([«“‘„]|`+)"), r" \1 "),
    (re.compile(r'^"'), "``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r"([ (\[{<])(\"|'')"), r"\1 `` "),
    # a quote opening a word, unless it starts a clitic such as 're or 's
    (re.compile(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"), r"\1 "),
]
_FINAL_PERIOD = re.compile(r"([^.])(\.)([\]\)}>\"'»”’]*)\s*$")
_PUNCTUATION_RULES = [
    (_FINAL_PERIOD, r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),   # 1,000 and 10:30 stay whole
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r"[\u2012-\u2015]"), r" \g<0> "),  # figure, en, em dashes
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"\*"), r" \g<0> "),
    (re.compile(r"[\]\[(){}<>]"), r" \g<0> "),
    (re.compile(r"--"), r" -- "),
]
_CLOSING_QUOTE_RULES = [
    (re.compile(r"([»”’])"), r" \1 "),
    (re.compile(r"''"), " '' "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"\s+"), " "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]
# Words the Treebank tokenizer cuts in two: cannot -> can not, gonna -> gon na, 'tis -> 't is.
_FUSED_WORDS = [re.compile(p) for p in (
    r"(?i)\b(can)(not)\b", r"(?i)\b(d)('ye)\b", r"(?i)\b(gim)(me)\b", r"(?i)\b(gon)(na)\b",
    r"(?i)\b(got)(ta)\b", r"(?i)\b(lem)(me)\b", r"(?i)\b(more)('n)\b", r"(?i)\b(wan)(na)(?=\s)",
    r"(?i) ('t)(is)\b", r"(?i) ('t)(was)\b",
)]


def _tokenize_sentence(sentence: str) -> list[str]:
    for rules in (_OPENING_QUOTE_RULES, _PUNCTUATION_RULES):
        for pattern, replacement in rules:
            sentence = pattern.sub(replacement, sentence)
    sentence = f" {sentence} "
    for pattern, replacement in _CLOSING_QUOTE_RULES:
        sentence = pattern.sub(replacement, sentence)
    for pattern in _FUSED_WORDS:
        sentence = pattern.sub(r" \1 \2 ", sentence)
    return sentence.split()


def word_tokens(text: str) -> list[str]:
    """Tokens as ``nltk.word_tokenize`` would produce them (see module doc)."""
    return [tok for sentence in split_sentences(text) for tok in _tokenize_sentence(sentence)]


def count_capital_words(text: str) -> int:
    """Number of tokens whose cased characters are all uppercase ("NASA", "I", "N'T")."""
    return sum(1 for tok in word_tokens(text) if tok.isupper())
