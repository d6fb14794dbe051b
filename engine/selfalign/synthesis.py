"""Prompt synthesis, the text side: the meta-prompt, parsing what the model wrote, and the
heuristic filters on the new prompts (I-SHEEP steps 1 and 2). Generation itself is the
loop's job.

The meta-prompt shows `num_examples` seed tasks as numbered blocks separated by `###`,
the layout of Alpaca's generate_instruction.py, and ends with the next number's
"Instruction:" so the model writes task 6, 7, ... The I-SHEEP release shows only
Instruction and Input (the answers are generated in a later step, and omitting them leaves
the 1000-token budget to new prompts); that is the default here. `with_outputs=True`
gives Alpaca's blocks with an Output field and the requirement on output length.

Each decision the release takes differently is a switch whose default is the engine's
behaviour (docs/FIDELITY.md has the table, citing the release's lines):
  build_meta_prompt(output_requirement=True)   the release's 9th requirement (outputs under
                                               100 words, seed_ppl/prompt.txt:12)
  parse_generated_tasks(split="reference")     the release's parser: `###` chunks, item k
                                               must carry number num_prompt_tasks + 1 + k
                                               (generate_instruction.py:107-122)
  parse_generated_tasks(drop_last="always")    drop the last chunk whatever the stop
                                               reason (generate_instruction.py:112)
  parse_generated_tasks(drop_output_items=True)   drop items with an Output field
  filter_prompt(rules="reference")             the release's filters, exactly
                                               (generate_instruction.py:95-105,124-163)
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.selfalign.seeds import SeedTask

NOINPUT = "<noinput>"

_REQUIREMENTS = [
    "Use a different main verb in each instruction, so that the set stays varied.",
    "Vary the wording too: mix direct commands with questions.",
    "Cover many kinds of tasks, for example open-ended writing, classification, editing, "
    "rewriting, reasoning, math, coding questions, extraction and advice.",
    "Every task must be something a language model that reads and writes only text can do. "
    "Do not ask for anything visual or audible as output, and do not ask it to act in the "
    "world, such as setting an alarm for 6am or booking a table, since it cannot take actions.",
    "Write the instructions in English.",
    "Keep each instruction to one or two sentences. A command and a question are both fine.",
    "Give the instruction a suitable input when it needs one: a concrete, realistic example "
    "for that instruction, never a bare placeholder. The input should give the task enough "
    "substance to be challenging, but it should ideally stay under 100 words.",
    "Some instructions need no input, for example a general-knowledge question such as "
    "\"which planet has the most moons\". Then write \"<noinput>\" in the input field.",
]
_OUTPUT_REQUIREMENT = (
    "The output should be a fitting answer to the instruction and its input, shorter than "
    "100 words.")


LIST_SIZE = 20     # tasks the meta-prompt asks for


def list_end_stop() -> list[str]:
    """Our synthesis stop: the line that would start the item after the list's last one."""
    return [f"\n{LIST_SIZE}."]


def meta_prompt_header(with_outputs: bool = False, output_requirement: bool = False) -> str:
    """The fixed text before the examples: the task, the requirements, and the list title.

    The requirements follow the release's nine items one for one (seed_ppl/prompt.txt:4-12)
    in our wording; the ninth, outputs under 100 words, is listed with `output_requirement`
    or `with_outputs`.
    """
    requirements = _REQUIREMENTS + ([_OUTPUT_REQUIREMENT] if with_outputs or output_requirement
                                    else [])
    lines = [
        f"Your job is to write a set of {LIST_SIZE} varied task instructions. A GPT language model "
        "will be given these instructions, and we will judge how well it completes them.",
        "",
        "The requirements are:",
    ]
    lines += [f"{k}. {text}" for k, text in enumerate(requirements, start=1)]
    lines += ["", f"List of {LIST_SIZE} tasks:", "", ""]  # a blank line before the first "###"
    return "\n".join(lines)


def format_example_block(number: int, task: SeedTask, with_outputs: bool = False) -> str:
    """One numbered `###` block: `N. Instruction: ...`, `N. Input:` + text, [`N. Output:`]."""
    instruction = re.sub(r"\s+", " ", task.instruction).strip().rstrip(":")
    task_input = task.input if task.input.strip() else NOINPUT
    block = f"###\n{number}. Instruction: {instruction}\n{number}. Input:\n{task_input}\n"
    if with_outputs:
        block += f"{number}. Output:\n{task.output}\n"
    return block


def build_meta_prompt(seeds: Sequence[SeedTask], rng: random.Random, num_examples: int = 5,
                      with_outputs: bool = False, output_requirement: bool = False) -> str:
    """Meta-prompt with `num_examples` seeds drawn uniformly without replacement.

    Ends with "###\\n{num_examples + 1}. Instruction:" (no trailing space), so the model's
    continuation starts with the new instruction text. `output_requirement` keeps the
    release's requirement that outputs stay under 100 words (its item 9).
    """
    if len(seeds) < num_examples:
        raise ValueError(f"need at least {num_examples} seed tasks, got {len(seeds)}")
    chosen = rng.sample(list(seeds), num_examples)
    prompt = meta_prompt_header(with_outputs, output_requirement)
    for number, task in enumerate(chosen, start=1):
        prompt += format_example_block(number, task, with_outputs)
    return prompt + f"###\n{num_examples + 1}. Instruction:"


@dataclass(frozen=True)
class ParsedTask:
    """One task the model wrote; `number` is its position in the numbered list."""
    instruction: str
    input: str
    output: str = ""
    number: int = 0


# Items end at "###" or where a line starts a new "N. Instruction:" (models often drop the
# separator); a field marker of another number inside an item stays in the text and is
# caught later by the leaked-marker filter.
_ITEM_BREAK_RE = re.compile(r"###|\n(?=[ \t]*\d+\.\s+Instruction:)")
_FIRST_INSTRUCTION_RE = re.compile(r"(?<!\d)(\d+)\.\s+Instruction:")


def _split_item(item: str) -> ParsedTask | None:
    first = _FIRST_INSTRUCTION_RE.search(item)
    if first is None:
        return None
    number = int(first.group(1))
    pieces = re.split(rf"(?<!\d){number}\.\s+(Instruction|Input|Output):", item)
    labels, texts = pieces[1::2], pieces[2::2]
    if labels not in (["Instruction", "Input"], ["Instruction", "Input", "Output"]):
        return None
    instruction, task_input = texts[0].strip(), texts[1].strip()
    output = texts[2].strip() if len(texts) == 3 else ""
    if task_input.lower() == NOINPUT:
        task_input = ""
    return ParsedTask(instruction=instruction, input=task_input, output=output, number=number)


DROP_LAST = ("length", "always")
SPLITS = ("engine", "reference")


def parse_generated_tasks(text: str, num_prompt_tasks: int = 5, finish_reason: str = "stop",
                          drop_last: str = "length", drop_output_items: bool = False,
                          split: str = "engine") -> list[ParsedTask]:
    """Split the model's continuation of the meta-prompt into tasks.

    The continuation starts right after "{num_prompt_tasks + 1}. Instruction:".

    split="engine": items are separated by `###` (or a line starting "N. Instruction:"); each
    must hold exactly the markers "N. Instruction:", "N. Input:" and optionally "N. Output:"
    with one number N, else it is dropped, as in the reference. Text before an item's first
    marker (chatter) is ignored. Unlike the reference, N is read from the item rather than
    from its position, so one skipped or repeated number does not lose every later item.
    `drop_output_items` drops an item that carries an Output field (the release drops them:
    its filter finds the marker in the input, generate_instruction.py:100).

    split="reference": the release's parser (generate_instruction.py:107-122): `###` chunks
    only; chunk k must split on "{num_prompt_tasks + 1 + k}. Instruction:|Input:" into
    exactly one instruction and one input, else it is dropped. An Output field stays in the
    input's text, where filter_prompt(rules="reference") drops it as the release does.

    drop_last="length": when generation stopped for length the last item may be cut short and
    is dropped (Alpaca's rule). drop_last="always": the release drops the last chunk whatever
    the stop reason (generate_instruction.py:112), which loses a complete task when the model
    ended the list on its own. An input that is exactly "<noinput>" (any case) becomes "".
    """
    if drop_last not in DROP_LAST:
        raise ValueError(f"drop_last must be one of {DROP_LAST}, got {drop_last!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    raw = f"{num_prompt_tasks + 1}. Instruction:" + text
    if split == "reference":
        items = raw.split("###")
    else:
        items = _ITEM_BREAK_RE.split(raw)
    if drop_last == "always" or finish_reason == "length":
        items = items[:-1]
    if split == "reference":
        return [task for k, item in enumerate(items)
                if (task := _split_release_item(item, num_prompt_tasks + 1 + k)) is not None]
    tasks = [task for task in map(_split_item, items) if task is not None]
    return [t for t in tasks if not t.output] if drop_output_items else tasks


def _split_release_item(item: str, number: int) -> ParsedTask | None:
    # the release's pattern, unanchored: "16. Instruction:" also holds "6. Instruction:"
    pieces = re.split(rf"{number}\.\s+(Instruction|Input):", item)
    if len(pieces) != 5:
        return None
    task_input = pieces[4].strip()
    return ParsedTask(instruction=pieces[2].strip(),
                      input="" if task_input.lower() == NOINPUT else task_input, number=number)


# ---- heuristic prompt filters: each returns True when the task should be dropped -------

MIN_WORDS, MAX_WORDS = 4, 150
BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
             "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
             "diagram")
_BLACKLIST_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b",
                           re.IGNORECASE)
_MARKER_RE = re.compile(r"(?:^|\s)(?:\d+\.\s*)?(?:Instruction|Input|Output)\s*:|###")
_URL_RE = re.compile(r"\bhttps?:|\bwww\.[A-Za-z0-9-]+\.", re.IGNORECASE)
_NOINPUT_INPUT_RE = re.compile(r"no\s?input", re.IGNORECASE)
_NOINPUT_INSTRUCTION_RE = re.compile(r"noinput", re.IGNORECASE)
_EMPTY_LIKE_INPUTS = {"none", "n/a", "na", "null", "nil", "nothing", "empty", "-"}
_PLACEHOLDER_RE = re.compile(r"<[A-Za-z_][\w \-]{0,19}>|\[(?:your|insert|enter) [^\]]{1,30}\]",
                             re.IGNORECASE)


def has_bad_length(task: ParsedTask) -> bool:
    """Instruction outside 4..150 whitespace-separated words."""
    n = len(task.instruction.split())
    return n < MIN_WORDS or n > MAX_WORDS


def has_blacklisted_word(task: ParsedTask) -> bool:
    """A whole-word blacklist hit (any case) in the instruction or the input.

    Alpaca checks the instruction only; I-SHEEP's release checks the input as well.
    """
    return bool(_BLACKLIST_RE.search(task.instruction) or _BLACKLIST_RE.search(task.input))


def starts_with_write_a_program(task: ParsedTask) -> bool:
    """Alpaca found models prefix many tasks with this, making them ambiguous."""
    return task.instruction.strip().startswith("Write a program")


def starts_with_punctuation(task: ParsedTask) -> bool:
    text = task.instruction.strip()
    return bool(text) and text[0] in string.punctuation


def starts_with_non_ascii(task: ParsedTask) -> bool:
    text = task.instruction.strip()
    return bool(text) and not text[0].isascii()


def has_noinput_leak(task: ParsedTask) -> bool:
    """The word "noinput" in the instruction, "noinput"/"no input" in the input, or an
    input that is just "None", "N/A" and the like.

    parse_generated_tasks has already turned an exact "<noinput>" into "" (kept, as the
    reference does); any other spelling means the model garbled the format, and the
    reference drops the task.
    """
    stripped = task.input.strip().strip(".").lower()
    return bool(_NOINPUT_INSTRUCTION_RE.search(task.instruction)
                or _NOINPUT_INPUT_RE.search(task.input) or stripped in _EMPTY_LIKE_INPUTS)


def has_leaked_marker(task: ParsedTask) -> bool:
    """An `Instruction:` / `Input:` / `Output:` marker (or `###`) inside a field."""
    return bool(_MARKER_RE.search(task.instruction) or _MARKER_RE.search(task.input))


def has_url(task: ParsedTask) -> bool:
    """The model cannot open links."""
    return bool(_URL_RE.search(task.instruction) or _URL_RE.search(task.input))


def has_placeholder(task: ParsedTask) -> bool:
    """A template slot such as "<name>" or "[your city]" instead of real data.

    The meta-prompt asks for no placeholders; I-SHEEP's release drops fields with
    `<...>` slots (its step_2_1 script). Also catches short HTML tags, a known cost.
    """
    return bool(_PLACEHOLDER_RE.search(task.instruction) or _PLACEHOLDER_RE.search(task.input))


def input_repeats_instruction(task: ParsedTask) -> bool:
    """A non-empty input already contained in the instruction (I-SHEEP's step_2_1 rule)."""
    text = task.input.strip()
    return bool(text) and text in task.instruction


PROMPT_FILTERS: tuple[tuple[str, Callable[[ParsedTask], bool]], ...] = (
    ("length", has_bad_length),
    ("blacklist", has_blacklisted_word),
    ("write_a_program", starts_with_write_a_program),
    ("starts_with_punctuation", starts_with_punctuation),
    ("starts_with_non_ascii", starts_with_non_ascii),
    ("noinput", has_noinput_leak),
    ("leaked_marker", has_leaked_marker),
    ("url", has_url),
    ("placeholder", has_placeholder),
    ("input_in_instruction", input_repeats_instruction),
)


# The release's rules (seed_ppl/generate_instruction.py), each exactly as written there.
def _release_length(task: ParsedTask) -> bool:
    n = len(task.instruction.split())                                   # :125
    return n <= 3 or n > 150


def _release_blacklist(task: ParsedTask) -> bool:
    return bool(_BLACKLIST_RE.search(task.instruction) or _BLACKLIST_RE.search(task.input))  # :148-151


def _release_punctuation(task: ParsedTask) -> bool:
    return task.instruction[:1] in tuple(string.punctuation)           # :153


def _release_non_ascii(task: ParsedTask) -> bool:
    return not task.instruction[:1].isascii()                           # :156


def _release_noinput(task: ParsedTask) -> bool:
    # :97; the instruction check is case-sensitive there
    low = task.input.lower()
    return "noinput" in low or "no input" in low or "noinput" in task.instruction


def _release_marker(task: ParsedTask) -> bool:
    return bool(re.search(r".\s+(Instruction|Input):", task.instruction)               # :100
                or re.search(r".\s+(Instruction|Input|Output):", task.input))


def _release_url(task: ParsedTask) -> bool:
    return bool(re.search(r"https?:", task.instruction) or re.search(r"https?:", task.input))  # :103


REFERENCE_PROMPT_FILTERS: tuple[tuple[str, Callable[[ParsedTask], bool]], ...] = (
    ("length", _release_length),
    ("blacklist", _release_blacklist),
    ("starts_with_punctuation", _release_punctuation),
    ("starts_with_non_ascii", _release_non_ascii),
    ("noinput", _release_noinput),
    ("leaked_marker", _release_marker),
    ("url", _release_url),
)
PROMPT_RULES = {"engine": PROMPT_FILTERS, "reference": REFERENCE_PROMPT_FILTERS}


def filter_prompt(task: ParsedTask, rules: str = "engine") -> str | None:
    """The reason (a filter name) the first failing filter gives, or None to keep.

    rules="engine": PROMPT_FILTERS. rules="reference": the release's filters in its order
    (length 4..150 words, blacklist, leading punctuation, leading non-ASCII, noinput, leaked
    Instruction/Input/Output markers, URLs) with its exact patterns; it has no "Write a
    program" rule, and its placeholder, "none" and input-in-instruction rules run after
    answering, on the pair (pair_filters).
    """
    if rules not in PROMPT_RULES:
        raise ValueError(f"prompt rules must be one of {tuple(PROMPT_RULES)}, got {rules!r}")
    for reason, should_drop in PROMPT_RULES[rules]:
        if should_drop(task):
            return reason
    return None
