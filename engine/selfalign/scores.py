"""From the judge's output to a score: parse its text, or take the expectation over its
log-probs of the ten possible scores.

Parsing rules (`parse_score(text, rule=...)`):

  "reference" (default): I-SHEEP's released `extract_number_from_eval`. Leading
      whitespace and non-word characters are removed; the text must then start with a
      number, optionally with decimals ("9", "9||...", "9/10", "8.5 ...", "**9**"), which
      is rounded with Python's round (half to even: 8.5 -> 8, 9.5 -> 10) and kept when in
      1..10. Text before the number ("Score: 9") gives None. (Its second branch, a number
      before "||", can never match once the first has failed, so it is left out.)
  "strict": `int(text.split("||")[0])` must succeed and lie in 1..10; "9||x" and " 9 "
      parse, "9/10", "8.5" and "Score: 9||" do not.

For the explain-then-score judge format (`parse_explained_score`): the judge writes its
reasoning, then `Score: <n>`; the number after the *last* "Score:" is read (rounded as above,
kept in 1..10). No such line, or a number outside 1..10, gives None.

None means the pair is dropped (DESIGN step 6).
"""

from __future__ import annotations

import math
import re

PARSE_RULES = ("reference", "strict")
_LEADING_JUNK_RE = re.compile(r"^\s*\W*")
_LEADING_NUMBER_RE = re.compile(r"^\d+(\.\d+)?")


def _in_range(score: int) -> int | None:
    return score if 1 <= score <= 10 else None


def parse_score(text: str, rule: str = "reference") -> int | None:
    """The judge's 1..10 score, or None when the text has none by the chosen rule."""
    if rule == "reference":
        match = _LEADING_NUMBER_RE.match(_LEADING_JUNK_RE.sub("", text, count=1))
        if not match:
            return None
        try:
            return _in_range(round(float(match.group(0))))
        except (ValueError, OverflowError):  # e.g. a 400-digit number is inf
            return None
    if rule == "strict":
        try:
            return _in_range(int(text.split("||")[0]))
        except ValueError:
            return None
    raise ValueError(f"score parse rule must be one of {PARSE_RULES}, got {rule!r}")


_SCORE_LINE_RE = re.compile(r"Score:[ \t]*\**[ \t]*(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_explained_score(text: str) -> int | None:
    """The score of an explain-then-score judgement: the number after its last "Score:"."""
    found = _SCORE_LINE_RE.findall(text)
    if not found:
        return None
    try:
        return _in_range(round(float(found[-1])))
    except (ValueError, OverflowError):
        return None


def parse_judgement(text: str, judge_format: str = "score_first") -> int | None:
    """The judge's score in either judge format (assessment_prompts.JUDGE_FORMATS)."""
    if judge_format == "score_first":
        return parse_score(text)
    if judge_format == "explain_first":
        return parse_explained_score(text)
    raise ValueError(f"judge format must be score_first or explain_first, got {judge_format!r}")


def expected_score(logprobs_by_score: dict[int, float]) -> float:
    """Expectation of the score under the judge's renormalised distribution over 1..10.

    logprobs_by_score: score -> log-probability of that score's whole text (summed over
    its tokens, so "10" may be two tokens "1", "0"); the loop scores the strings of
    assessment_prompts.score_continuations(), "N||", which keeps "1" from counting the
    mass of "10". p(n) = exp(lp[n]) / sum_m exp(lp[m]) over the scores given (normally
    all ten); returns sum_n n * p(n). -inf entries get probability 0.
    """
    if not logprobs_by_score:
        raise ValueError("expected_score: no scores given")
    for score, lp in logprobs_by_score.items():
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 10:
            raise ValueError(f"expected_score: score keys must be integers 1..10, got {score!r}")
        if math.isnan(lp) or lp == math.inf:
            raise ValueError(f"expected_score: log-prob of score {score} is {lp}")
    top = max(logprobs_by_score.values())
    if top == -math.inf:
        raise ValueError("expected_score: every score has probability 0")
    weights = {s: math.exp(lp - top) for s, lp in logprobs_by_score.items()}
    total = sum(weights.values())
    return sum(s * w for s, w in weights.items()) / total
