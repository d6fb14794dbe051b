"""The release's rules on an answered pair's instruction and input (I-SHEEP step 5).

The release runs these after answering, in the same pass as its output rules
(seed_ppl/utils/step_2_1_filter_output_and_instruction_to_sft.py:66-91, main at :160-164):
  noinput_pattern       "noinput", "no input", "none" (any case, anywhere: also "nonetheless")
                        or "<" and ">" at most 20 characters apart, in the input or the
                        instruction (:50-53, :73)
  input_in_instruction  a non-blank input that is a substring of the instruction (:81-91)

The engine runs narrower forms of both at the prompt stage, before any answer is paid for
(synthesis.has_noinput_leak, has_placeholder, input_repeats_instruction), so under
`response.pair_rules = "engine"` nothing more runs after answering.
"""

from __future__ import annotations

import re

PAIR_RULES = ("reference", "engine")
_RELEASE_INPUT_RE = re.compile(r"(?i)noinput|no input|<.{1,20}>|none")    # step_2_1:51


def filter_pair(instruction: str, input: str, response: str,
                rules: str = "reference") -> str | None:
    """Why the answered pair is dropped ("noinput_pattern" | "input_in_instruction"), or None.

    rules="reference": the release's pair rules, in its order. rules="engine": keep every pair
    (the engine's narrower forms ran on the prompt, before answering).
    The release's pair rules read only the instruction and the input; `response` is taken
    because they run on the answered pair (its output rules are
    response_filters.filter_response(rules="reference")).
    """
    if rules not in PAIR_RULES:
        raise ValueError(f"pair rules must be one of {PAIR_RULES}, got {rules!r}")
    if rules == "engine":
        return None
    if _RELEASE_INPUT_RE.search(input) or _RELEASE_INPUT_RE.search(instruction):
        return "noinput_pattern"
    if input.strip() != "" and input in instruction:
        return "input_in_instruction"
    return None
