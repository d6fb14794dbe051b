"""The 25 verifiable instructions of IFEval, checked with IFEval's published rules.

Each check is a function ``check(response, **kwargs) -> bool``; its keyword-only
parameters are exactly the kwargs IFEval stores for that instruction id, and all of them
are required (IFEval draws a random value for a missing one; a random rule makes an
evaluation unrepeatable, so we refuse instead). ``INSTRUCTIONS`` maps each IFEval id to
its check, and ``validate_kwargs`` says what is wrong with a kwargs dict in one sentence.

Deliberate departures from IFEval, all on inputs IFEval's own data never contains:
keywords, forbidden words, postscript markers and section splitters are matched as
literal text (IFEval pastes them into a regex unescaped), and out-of-range settings
(negative counts, an nth paragraph beyond the paragraph count, a multi-letter "letter")
are errors rather than silently re-drawn at random.
"""

from __future__ import annotations

import collections
import inspect
import json
import re
from dataclasses import dataclass
from typing import Callable

from engine.eval.text_units import count_capital_words, count_sentences, count_words

RELATIONS = ("less than", "at least")
CONSTRAINED_ANSWERS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _compare(actual: int, relation: str, threshold: int) -> bool:
    return actual < threshold if relation == "less than" else actual >= threshold


def detect_language(text: str) -> str | None:
    """ISO 639-1 code that langdetect assigns, or None when it finds no features.

    langdetect samples at random; seeding before every call makes the answer a function
    of the text alone.
    """
    import langdetect
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None


# --- keywords --------------------------------------------------------------------------

def keywords_existence(response: str, *, keywords: list[str]) -> bool:
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    found = len(re.findall(re.escape(keyword.strip()), response, flags=re.IGNORECASE))
    return _compare(found, relation, frequency)


def keywords_forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    return not any(re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE)
                   for w in forbidden_words)


def keywords_letter_frequency(response: str, *, letter: str, let_frequency: int,
                              let_relation: str) -> bool:
    found = collections.Counter(response.lower())[letter.strip().lower()]
    return _compare(found, let_relation, let_frequency)


# --- language and case -----------------------------------------------------------------

def language_response_language(response: str, *, language: str) -> bool:
    detected = detect_language(response)
    return detected is None or detected == language   # undetectable counts as followed


def change_case_english_capital(response: str) -> bool:
    return response.isupper() and detect_language(response) in (None, "en")


def change_case_english_lowercase(response: str) -> bool:
    return response.islower() and detect_language(response) in (None, "en")


def change_case_capital_word_frequency(response: str, *, capital_frequency: int,
                                       capital_relation: str) -> bool:
    return _compare(count_capital_words(response), capital_relation, capital_frequency)


# --- length ----------------------------------------------------------------------------

def length_number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(response), relation, num_sentences)


def length_number_words(response: str, *, num_words: int, relation: str) -> bool:
    return _compare(count_words(response), relation, num_words)


def length_number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Paragraphs are separated by the markdown divider ``***``."""
    parts = re.split(r"\s?\*\*\*\s?", response)
    for i, part in enumerate(parts):
        if not part.strip() and 0 < i < len(parts) - 1:
            return False            # an empty paragraph between two dividers
    return sum(1 for part in parts if part.strip()) == num_paragraphs


def length_nth_paragraph_first_word(response: str, *, num_paragraphs: int, nth_paragraph: int,
                                    first_word: str) -> bool:
    """Paragraphs are separated by a blank line (``\\n\\n``)."""
    parts = response.split("\n\n")
    count = sum(1 for part in parts if part.strip())
    # IFEval indexes the raw split, empty pieces included, so a leading blank line shifts it.
    if nth_paragraph > count or not parts[nth_paragraph - 1].strip():
        return False
    word = parts[nth_paragraph - 1].split()[0].lstrip("'").lstrip('"')
    word = re.split(r"""[.,?!'"]""", word, maxsplit=1)[0].lower()
    return count == num_paragraphs and word == first_word.lower()


# --- detectable content and format -----------------------------------------------------

def content_number_placeholders(response: str, *, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def content_postscript(response: str, *, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def format_number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    """Markdown bullets: lines starting with ``* `` or ``-`` (a ``---`` rule counts too)."""
    stars = re.findall(r"^\s*\*[^*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def format_constrained_response(response: str) -> bool:
    response = response.strip()
    return any(option in response for option in CONSTRAINED_ANSWERS)


def format_number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    """``*like this*`` counts once; ``**bold**`` counts once through the double pattern."""
    singles = re.findall(r"\*[^\n*]*\*", response)
    doubles = re.findall(r"\*\*[^\n*]*\*\*", response)
    found = sum(1 for h in singles if h.strip("*").strip())
    found += sum(1 for h in doubles if h[2:-2].strip())
    return found >= num_highlights


def format_multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    splitter = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(splitter, response)) - 1 >= num_sections


def format_json_format(response: str) -> bool:
    text = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(fence)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def format_title(response: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


# --- combination, start/end, punctuation -----------------------------------------------

def combination_two_responses(response: str) -> bool:
    parts = response.split("******")
    answers = []
    for i, part in enumerate(parts):
        if part.strip():
            answers.append(part.strip())
        elif 0 < i < len(parts) - 1:
            return False
    return len(answers) == 2 and answers[0] != answers[1]


def combination_repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def startend_end_checker(response: str, *, end_phrase: str) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def startend_quotation(response: str) -> bool:
    response = response.strip()
    return len(response) > 1 and response[0] == '"' and response[-1] == '"'


def punctuation_no_comma(response: str) -> bool:
    return "," not in response


# --- registry --------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    """One IFEval instruction id, its check and the kwargs the check needs."""
    id: str
    check: Callable[..., bool]
    kwargs: tuple[str, ...]


def _instruction(instruction_id: str, check: Callable[..., bool]) -> Instruction:
    names = tuple(p.name for p in inspect.signature(check).parameters.values()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY)
    return Instruction(instruction_id, check, names)


INSTRUCTIONS: dict[str, Instruction] = {i.id: i for i in (
    _instruction("keywords:existence", keywords_existence),
    _instruction("keywords:frequency", keywords_frequency),
    _instruction("keywords:forbidden_words", keywords_forbidden_words),
    _instruction("keywords:letter_frequency", keywords_letter_frequency),
    _instruction("language:response_language", language_response_language),
    _instruction("length_constraints:number_sentences", length_number_sentences),
    _instruction("length_constraints:number_paragraphs", length_number_paragraphs),
    _instruction("length_constraints:number_words", length_number_words),
    _instruction("length_constraints:nth_paragraph_first_word", length_nth_paragraph_first_word),
    _instruction("detectable_content:number_placeholders", content_number_placeholders),
    _instruction("detectable_content:postscript", content_postscript),
    _instruction("detectable_format:number_bullet_lists", format_number_bullet_lists),
    _instruction("detectable_format:constrained_response", format_constrained_response),
    _instruction("detectable_format:number_highlighted_sections",
                 format_number_highlighted_sections),
    _instruction("detectable_format:multiple_sections", format_multiple_sections),
    _instruction("detectable_format:json_format", format_json_format),
    _instruction("detectable_format:title", format_title),
    _instruction("combination:two_responses", combination_two_responses),
    _instruction("combination:repeat_prompt", combination_repeat_prompt),
    _instruction("startend:end_checker", startend_end_checker),
    _instruction("startend:quotation", startend_quotation),
    _instruction("change_case:capital_word_frequency", change_case_capital_word_frequency),
    _instruction("change_case:english_capital", change_case_english_capital),
    _instruction("change_case:english_lowercase", change_case_english_lowercase),
    _instruction("punctuation:no_comma", punctuation_no_comma),
)}

_INT_KWARGS = {"frequency", "let_frequency", "capital_frequency", "num_sentences", "num_words",
               "num_paragraphs", "nth_paragraph", "num_placeholders", "num_bullets",
               "num_highlights", "num_sections"}
_RELATION_KWARGS = {"relation", "let_relation", "capital_relation"}
_LIST_KWARGS = {"keywords", "forbidden_words"}


def validate_kwargs(instruction_id: str, kwargs: dict) -> str | None:
    """What is wrong with ``kwargs`` for ``instruction_id``, or None when they are usable."""
    if instruction_id not in INSTRUCTIONS:
        return f"unknown instruction id {instruction_id!r}"
    expected = INSTRUCTIONS[instruction_id].kwargs
    missing = [k for k in expected if k not in kwargs]
    unknown = [k for k in kwargs if k not in expected]
    if missing or unknown:
        parts = [f"missing {missing}" if missing else "", f"unexpected {unknown}" if unknown else ""]
        return (f"{instruction_id} takes kwargs {list(expected)}: "
                + ", ".join(p for p in parts if p))
    for name, value in kwargs.items():
        problem = _kwarg_problem(name, value)
        if problem:
            return f"{instruction_id}: kwarg {name!r} {problem}"
    if instruction_id.endswith("nth_paragraph_first_word") and \
            kwargs["nth_paragraph"] > kwargs["num_paragraphs"]:
        return f"{instruction_id}: nth_paragraph is larger than num_paragraphs"
    return None


def _kwarg_problem(name: str, value) -> str | None:
    if name in _INT_KWARGS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"must be a non-negative integer, got {value!r}"
        if name == "nth_paragraph" and value == 0:
            return "counts from 1, got 0"
    elif name in _RELATION_KWARGS:
        if value not in RELATIONS:
            return f"must be one of {list(RELATIONS)}, got {value!r}"
    elif name in _LIST_KWARGS:
        if not isinstance(value, list) or not value or \
                not all(isinstance(v, str) and v for v in value):
            return f"must be a non-empty list of non-empty strings, got {value!r}"
    elif not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string, got {value!r}"
    elif name == "letter" and len(value.strip()) != 1:
        return f"must be a single letter, got {value!r}"
    return None


def check_instruction(instruction_id: str, response: str, kwargs: dict) -> bool:
    """Whether ``response`` follows one instruction, with IFEval's rule.

    An empty or whitespace-only response never follows anything (IFEval's scorer rule).
    ``kwargs`` must have passed ``validate_kwargs``.
    """
    if not response.strip():
        return False
    return bool(INSTRUCTIONS[instruction_id].check(response, **kwargs))
