"""The two self-assessment prompts (I-SHEEP step 6): response quality and instruction
following, each asking for a 1..10 score.

Two judge formats (`assessment.judge_format`):
  score_first    the paper's `<score>||<explanation>`: the prompt ends with a cue after which
                 the judge's first token is the number (parsed by scores.parse_score).
  explain_first  the judge first writes its reasoning (a check of the answer), then the score
                 on a line of its own, `Score: <n>` (parsed by scores.parse_explained_score).
                 Reasoning before the verdict lets a judge use what it works out.

Like the reference, the instruction and its input are joined with a space, the prompt is
plain text (the judge may be a base model), and it ends with a cue for the score followed
by one space, so the judge's continuation starts with the number. The log-prob mode
scores the continuations of `score_continuations()`; see scores.expected_score.

Layouts (`layout`): both put the same parts in the release's order (pair, criteria with what
earns 1 and what earns 10, the '<score>||<explanation>' format, the cue last, a trailing
space). "reference" also lays them out as the release does
(seed_ppl/evaluate_prompt_parameters.py:112,132): the pair on the opening line,
"Instruction: ... Response: ...." with a period after the response, one newline, then
criteria, format and cue on one line; the input joins the instruction when it is not "".
"engine" puts instruction and response on lines of their own and a blank line before the
criteria; the toy world's shipped base model was pretrained on it, so it stays the default.
"""

from __future__ import annotations

ASSESSMENT_KINDS = ("quality", "following")

_CRITERIA = {
    "quality": (
        "Rate the quality of the response on a scale of 1 to 10. Give 1 to a poor response: "
        "wrong, long-winded, hard to follow, or repetitive in its form or content. Give 10 "
        "to a good response: correct, concise, clear and free of redundancy."
    ),
    "following": (
        "Rate how well the response follows the instruction on a scale of 1 to 10. Give 1 "
        "when the response keeps writing the instruction instead of answering it, ignores "
        "the format the instruction asks for, or the instruction itself is vague or "
        "ambiguous. Give 10 when the response answers the instruction directly, keeps to "
        "the format it asks for, and the instruction is clear and unambiguous."
    ),
}

SCORE_CUE = "Judging strictly, the score is: "
JUDGE_FORMATS = ("score_first", "explain_first")
EXPLAIN_CUE = "Check:"          # the judge's reasoning follows; then "Score: <n>"
SCORE_LINE = "Score:"


LAYOUTS = ("engine", "reference")


def build_assessment_prompt(kind: str, instruction: str, input: str, response: str,
                            judge_format: str = "score_first", layout: str = "engine") -> str:
    """The judge prompt for one (instruction, input, response) triple.

    kind: "quality" or "following"; judge_format: one of JUDGE_FORMATS; layout: one of LAYOUTS.
    """
    if kind not in _CRITERIA:
        raise ValueError(f"assessment kind must be one of {ASSESSMENT_KINDS}, got {kind!r}")
    if judge_format not in JUDGE_FORMATS:
        raise ValueError(f"judge format must be one of {JUDGE_FORMATS}, got {judge_format!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"assessment layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "reference":
        task = f"{instruction} {input}" if input != "" else instruction
        head = ("Below are an instruction and a response to it. "
                f"Instruction: {task} Response: {response}.\n{_CRITERIA[kind]} ")
    else:
        task = f"{instruction} {input}" if input.strip() else instruction
        head = ("Below are an instruction and a response to it.\n"
                f"Instruction: {task}\n"
                f"Response: {response}\n\n"
                f"{_CRITERIA[kind]} ")
    if judge_format == "score_first":
        return head + f"Answer in the format '<score>||<explanation>'. {SCORE_CUE}"
    return (head + "First check the response and say in a sentence what you found, then give "
            f"the score on a line of its own as '{SCORE_LINE} <1-10>'.\n{EXPLAIN_CUE}")


def score_continuations() -> dict[int, str]:
    """Score -> the text whose summed log-prob the log-prob mode needs: "1||" .. "10||".

    The separator is part of each string so the ten events are disjoint: "1" alone is a
    prefix of "10", and its probability would include that of "10".
    """
    return {n: f"{n}||" for n in range(1, 11)}
