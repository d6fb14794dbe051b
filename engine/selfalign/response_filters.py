"""Rule filters on the model's answers (I-SHEEP step 5), before self-assessment.

The reference (I-SHEEP's step_2_1 script) drops on broad regexes: any "do you", any
paragraph with a "?", any "a." or "(b)" anywhere (which also hits "e.g."), any Chinese
character. Those rules throw away many good answers, so the rules here are narrower and
each is written out below; every one answers "does this text show the model did not
simply answer?", and each has an exemption where the prompt itself asks for that shape.

`clean_response` is applied first. The reference does not cut a reply that runs into a
new turn; it drops it, and so do we. Cleaning only strips whitespace, cuts at chat special
tokens (the reference stops generation on <|endoftext|>, <|im_start|>, <|im_end|>, so text
after them never exists there), and removes a leading "答案:" ("Answer:") as the
reference's pre-processing does. A whitespace-only answer counts as empty (the
reference compares with "" and would keep it).

`rules="reference"` (clean_response and filter_response) takes the release's decisions
exactly instead: its stop strings, its leading-"答案:" cut, no whitespace stripping, and its
output patterns in its order (seed_ppl/utils/step_2_1_filter_output_and_instruction_to_sft.py,
lines cited below). Its instruction/input rules, which it runs on the same pass, are
engine.selfalign.pair_filters.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SPECIAL_TOKEN_RE = re.compile(
    r"<\|im_end\|>|<\|im_start\|>|<\|endoftext\|>|<\|eot_id\|>|<\|end_of_text\|>"
    r"|<\|start_header_id\|>|</s>")
_LEADING_ANSWER_RE = re.compile(r"^(?:答案[:：]\s*)+")


RESPONSE_RULES = ("engine", "reference")
# the release's answer stop strings (seed_ppl/generate_output.py:162): vLLM ends the text there
RELEASE_STOPS_RE = re.compile(r"<\|endoftext\|>|<\|im_start\|>|<\|im_end\|>")
_RELEASE_ANSWER_PREFIX_RE = re.compile(r"^(答案[:：]\s?)+")    # step_2_1:57


def _check_rules(rules: str) -> None:
    if rules not in RESPONSE_RULES:
        raise ValueError(f"response rules must be one of {RESPONSE_RULES}, got {rules!r}")


def clean_response(text: str, rules: str = "engine") -> str:
    """engine: cut at the first chat special token, strip whitespace and a leading "答案:".

    reference: cut at the release's stop strings and remove leading "答案:" prefixes
    (step_2_1:55-64), nothing else: its patterns see the whitespace the model wrote.
    """
    _check_rules(rules)
    if rules == "reference":
        match = RELEASE_STOPS_RE.search(text)
        return _RELEASE_ANSWER_PREFIX_RE.sub("", text[:match.start()] if match else text)
    match = _SPECIAL_TOKEN_RE.search(text)
    if match:
        text = text[:match.start()]
    return _LEADING_ANSWER_RE.sub("", text.strip()).strip()


# Prompts that legitimately want questions, dialogue or options in the answer.
_ASKS_FOR_QUESTIONS_RE = re.compile(
    r"\b(?:questions?|ask|asks|asking|quiz|quizzes|riddles?|interviews?|faqs?|surveys?|"
    r"questionnaires?|trivia|dialogues?|dialogs?|conversations?|scripts?|role-?play)\b",
    re.IGNORECASE)
_ASKS_FOR_OPTIONS_RE = re.compile(
    r"\b(?:options?|choices?|multiple[- ]choice|quiz|quizzes|mcqs?|outlines?|alternatives)\b",
    re.IGNORECASE)
_OPTION_LABELS_IN_PROMPT_RE = re.compile(
    r"(?m)^[ \t]*(?:\([A-Ea-e]\)|[A-Ea-e][\).])[ \t]+\S|\([A-E]\)[ \t]*\S")


def is_empty(prompt: str, response: str) -> bool:
    return not response.strip()


_NOINPUT_RE = re.compile(r"noinput|<no input>", re.IGNORECASE)


def has_noinput_leak(prompt: str, response: str) -> bool:
    """The answer repeats the meta-prompt's "<noinput>" token (a format leak)."""
    return bool(_NOINPUT_RE.search(response))


# A new turn: a role label at the start of a line ("User:", "### Instruction", a bare
# "assistant" line left when chat special tokens are decoded away), a numbered item of
# the meta-prompt format ("7. Instruction:"), or a raw chat-template tag.
_ROLE_LABEL_RE = re.compile(
    r"(?im)^[ \t]*(?:#+[ \t]*)?(?:user|human|assistant|system|instruction)[ \t]*:")
_QUESTION_LABEL_RE = re.compile(r"(?im)^[ \t]*(?:#+[ \t]*)?question[ \t]*:")
_TEMPLATE_HEADER_RE = re.compile(r"(?im)^[ \t]*#+[ \t]*(?:instruction|input|output|response)\b")
_BARE_ROLE_LINE_RE = re.compile(r"(?im)^[ \t]*(?:user|human|assistant|system)[ \t]*$")
_NUMBERED_ITEM_RE = re.compile(r"(?m)^[ \t]*\d+\.[ \t]*(?:Instruction|Input|Output)[ \t]*:")
_CHAT_TAG_RE = re.compile(r"\[/?INST\]|<\|(?:user|assistant|system)\|>|<<SYS>>")

DIALOGUE_PATTERNS = (_ROLE_LABEL_RE, _TEMPLATE_HEADER_RE, _BARE_ROLE_LINE_RE,
                     _NUMBERED_ITEM_RE, _CHAT_TAG_RE)


def continues_dialogue(prompt: str, response: str) -> bool:
    """The answer writes a new turn or a new task instead of (or after) answering.

    "Question:" lines count too, unless the prompt asks for questions or a dialogue.
    Plain "Input:" / "Output:" lines do not count: worked examples use them.
    """
    if any(p.search(response) for p in DIALOGUE_PATTERNS):
        return True
    return bool(_QUESTION_LABEL_RE.search(response)) and not _ASKS_FOR_QUESTIONS_RE.search(prompt)


# Option lines "A) ...", "A. ...", "(A) ..." (upper case; "a." lists are ordinary
# sub-lists), inline "(A) x (B) y" or "A) x B) y", or the reference's "Answer choices:".
_OPTION_LINE_RE = re.compile(r"(?m)^[ \t]*(?:\(([A-E])\)|([A-E])[\).])[ \t]+\S")
_INLINE_OPTIONS_RE = re.compile(r"\(A\)[^\n]*?\(B\)|(?<![\w(])A\)[^\n]*?(?<![\w(])B\)")
_CHOICES_HEADER_RE = re.compile(r"(?i)\banswer[ \t]+choices[ \t]*:")


def has_multiple_choice_debris(prompt: str, response: str) -> bool:
    """Answer options the prompt never asked for: the model turned the task into an exam.

    Fires when the answer has option lines labelled A and then B, inline options (A)..(B),
    or an "Answer choices:" label, and the prompt neither shows option
    labels nor mentions options, choices, a quiz or an outline.
    """
    if _ASKS_FOR_OPTIONS_RE.search(prompt) or _OPTION_LABELS_IN_PROMPT_RE.search(prompt):
        return False
    labels = [a or b for a, b in _OPTION_LINE_RE.findall(response)]
    if "A" in labels and "B" in labels[labels.index("A") + 1:]:
        return True
    return bool(_INLINE_OPTIONS_RE.search(response) or _CHOICES_HEADER_RE.search(response))


_LAST_SENTENCE_RE = re.compile(r"(?:^|[.!?\n])([^.!?\n]*\?+)\s*$")
_SECOND_PERSON_RE = re.compile(r"\b(?:you|your|yours|yourself|yourselves)\b", re.IGNORECASE)


def ends_with_question_to_user(prompt: str, response: str) -> bool:
    """The last sentence is a question addressed to the reader ("What do you think?").

    Needs a "?" at the very end and a second-person word in that sentence, so rhetorical
    endings ("So why wait?") stay; exempt when the prompt asks for questions or dialogue.
    """
    match = _LAST_SENTENCE_RE.search(response.rstrip())
    if not match or not _SECOND_PERSON_RE.search(match.group(1)):
        return False
    return not _ASKS_FOR_QUESTIONS_RE.search(prompt)


_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_ASKS_FOR_CJK_RE = re.compile(
    r"\b(?:chinese|mandarin|cantonese|japanese|korean|kanji|hanzi|hiragana|katakana|"
    r"hangul|pinyin)\b", re.IGNORECASE)


def drifts_into_cjk(prompt: str, response: str) -> bool:
    """Chinese/Japanese/Korean script in the answer to a prompt that has none and does
    not mention those languages (Qwen base models drift into Chinese; the reference drops
    any Chinese character)."""
    if _CJK_RE.search(prompt) or _ASKS_FOR_CJK_RE.search(prompt):
        return False
    return bool(_CJK_RE.search(response))


RESPONSE_FILTERS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("empty", is_empty),
    ("noinput_leak", has_noinput_leak),
    ("dialogue_continuation", continues_dialogue),
    ("multiple_choice_debris", has_multiple_choice_debris),
    ("trailing_question", ends_with_question_to_user),
    ("language_drift", drifts_into_cjk),
)


# The release's output patterns (step_2_1:36-48), one alternative per reason; the decision is
# theirs exactly (a text matches the release's regex iff it matches one of these). None of
# them reads the prompt.
_RELEASE_OUTPUT_PATTERNS = (
    ("role_line", r"(?i)\n(assistant|system|human|question|output|user)[:\n]"),   # :38
    ("answer_choices", r"(?i)Answer\sChoices:"),                                  # :41
    ("noinput_leak", r"(?i)noinput|no input"),                                    # :41
    ("can_you", r"(?i)\n\n?can you"),                                             # :41
    ("do_you", r"(?i)do you .{1,50}?"),                                           # :41
    ("question_paragraph", r"(?i)\n\n.{1,100}\?"),                                # :41
    ("enumeration", r"(?:\b[A-Ea-e]\.|\([A-Ea-e]\))"),                             # :43
    ("cjk", r"[\u4e00-\u9fff]+"),                                                  # :44
)


def _found_in_response(pattern: str) -> Callable[[str, str], bool]:
    compiled = re.compile(pattern)
    return lambda prompt, response: bool(compiled.search(response))


def _is_empty_string(prompt: str, response: str) -> bool:
    return response == ""                       # step_2_1:20; whitespace-only is kept


REFERENCE_RESPONSE_FILTERS: tuple[tuple[str, Callable[[str, str], bool]], ...] = tuple(
    (name, _found_in_response(pattern)) for name, pattern in _RELEASE_OUTPUT_PATTERNS
) + (("empty", _is_empty_string),)


def filter_response(prompt: str, response: str, rules: str = "engine") -> str | None:
    """Why the answer is dropped (a filter name), or None to keep it.

    `prompt` is the instruction and its input as the model saw them (e.g.
    instruction + "\\n" + input); `response` should already be clean_response's output
    under the same rules, which is what the loop stores (it is cleaned again here; cleaning
    is idempotent).

    rules="engine": RESPONSE_FILTERS. rules="reference": the release's output rules in its
    order (REFERENCE_RESPONSE_FILTERS): role lines, "Answer Choices:", noinput, "can you" and
    "do you", a paragraph after a blank line with a "?" in its first 100 characters, a./(b)
    enumerations (which also catch "e.g."), CJK ideographs, then an empty answer.
    """
    response = clean_response(response, rules)
    for reason, should_drop in (REFERENCE_RESPONSE_FILTERS if rules == "reference"
                                else RESPONSE_FILTERS):
        if should_drop(prompt, response):
            return reason
    return None
