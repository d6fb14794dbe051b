"""World tasks: sampling them, judging any response to them, and the held-out split.

    task = sample_task(random.Random(0))    # WorldTask(family, instruction, input, output)
    check(task.instruction, task.input, "some answer")   # True / False; None: not a world task

`check` recognizes an instruction by its wording: every phrasing of every family is a regex
(case and whitespace free, the final "." or "?" optional) with the slots as groups, so an
instruction the model wrote in the loop with new numbers or words is judged just like a
sampled one. Anything else is not verifiable (None).

The held-out split is a fixed hash of the exact (instruction, input) pair: training tasks
(the corpus, the seeds) are drawn from one side, evaluation tasks from the other, so no
evaluation pair is ever seen in training, while the words and numbers themselves are shared
(a tiny model cannot learn to spell a word it has never been asked to spell).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from engine.world.families import FAMILIES, Family, Phrasing

HELD_OUT_SHARE = 0.2
SPLITS = ("train", "heldout", "any")


@dataclass(frozen=True)
class WorldTask:
    family: str
    instruction: str
    input: str
    output: str

    @property
    def prompt(self) -> str:
        return raw_prompt(self.instruction, self.input)


def raw_prompt(instruction: str, input: str = "") -> str:
    """The base-model prompt of the loop: instruction, "\\n" + input if any, then "\\n".

    Must equal engine.training.data.format_raw_prompt (the trainer's raw format).
    """
    return f"{instruction}\n{input}\n" if input else f"{instruction}\n"


@dataclass(frozen=True)
class Recognized:
    family: Family
    phrasing: Phrasing
    values: dict


def _template_regex(template: str, slots: dict[str, str], end_punctuation: bool) -> re.Pattern:
    body = template.rstrip(".?!") if end_punctuation else template
    parts = re.split(r"\{(\w+)\}", body)
    pattern = ""
    for k, part in enumerate(parts):
        if k % 2:
            pattern += f"(?P<{part}>{slots[part]})"
            continue
        # Literal words: any run of whitespace between them, or none next to a symbol
        # ("5 + 3" and "5+3"). An empty word is the edge of a neighbouring slot.
        words = part.split(" ")
        pattern += re.escape(words[0])
        for left, right in zip(words, words[1:]):
            symbol = (left and not left[-1].isalnum()) or (right and not right[0].isalnum())
            pattern += (r"\s*" if symbol else r"\s+") + re.escape(right)
    if end_punctuation:
        pattern += r"\s*[.?!]?"
    return re.compile(pattern, re.IGNORECASE)


def _compile_phrasings() -> list[tuple[Family, Phrasing, re.Pattern, re.Pattern | None]]:
    compiled = []
    for family in FAMILIES.values():
        for phrasing in family.phrasings:
            instruction_re = _template_regex(phrasing.instruction, family.slots, True)
            input_re = (_template_regex(phrasing.input, family.slots, False)
                        if phrasing.input else None)
            compiled.append((family, phrasing, instruction_re, input_re))
    return compiled


_PHRASINGS = _compile_phrasings()


def recognize(instruction: str, input: str = "") -> Recognized | None:
    """The family and slot values of an instruction in one of the world's phrasings.

    A phrasing that takes an input needs an input in its format; one that does not needs an
    empty input. None when nothing (or, by a wording clash, more than one family) matches.
    """
    instruction = " ".join(instruction.split())
    input = " ".join(input.split())
    found = []
    for family, phrasing, instruction_re, input_re in _PHRASINGS:
        head = instruction_re.fullmatch(instruction)
        if head is None:
            continue
        fields = dict(phrasing.fixed)
        fields.update(head.groupdict())
        if input_re is None:
            if input:
                continue
        else:
            tail = input_re.fullmatch(input)
            if tail is None:
                continue
            fields.update(tail.groupdict())
        values = family.read(fields)
        if values is not None:
            found.append(Recognized(family, phrasing, values))
    if len({r.family.name for r in found}) != 1:
        return None
    return found[0]


def family_of(instruction: str, input: str = "") -> str | None:
    found = recognize(instruction, input)
    return found.family.name if found else None


def check(instruction: str, input: str, response: str) -> bool | None:
    """Whether `response` answers the task correctly; None when the task is not a world task."""
    found = recognize(instruction, input)
    if found is None:
        return None
    return found.family.accepts(found.values, response)


def is_held_out(instruction: str, input: str = "") -> bool:
    """Whether this exact (instruction, input) pair belongs to the evaluation side."""
    digest = hashlib.blake2b(f"{instruction}\x00{input}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 < HELD_OUT_SHARE * 10_000


def _compose(family: Family, rng: random.Random) -> WorldTask:
    phrasing = rng.choice(family.phrasings)
    values = family.draw(rng, dict(phrasing.fixed))
    values.update(phrasing.fixed)
    text = family.render(values)
    return WorldTask(family.name, phrasing.instruction.format(**text),
                     phrasing.input.format(**text), family.answer(values))


def sample_task(rng: random.Random, family: str | None = None, split: str = "train") -> WorldTask:
    """One task with its correct output; family uniform over FAMILIES unless given.

    split: "train" (what the corpus and the seeds use), "heldout" (evaluation), "any".
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; the world has {sorted(FAMILIES)}")
    chosen = FAMILIES[family] if family else FAMILIES[rng.choice(sorted(FAMILIES))]
    for _ in range(1000):
        task = _compose(chosen, rng)
        if split == "any" or is_held_out(task.instruction, task.input) == (split == "heldout"):
            return task
    raise RuntimeError(f"no {split} task drawn for family {chosen.name} in 1000 tries")


def wrong_output(task: WorldTask, rng: random.Random) -> str:
    """A plausible wrong answer to `task` that check() rejects."""
    found = recognize(task.instruction, task.input)
    if found is None:
        raise ValueError(f"not a world task: {task.instruction!r} / {task.input!r}")
    for _ in range(100):
        candidate = found.family.wrong(found.values, rng)
        if not found.family.accepts(found.values, candidate):
            return candidate
    raise RuntimeError(f"no wrong answer found for {task!r}")


def off_task_output(task: WorldTask, rng: random.Random, split: str = "train") -> str:
    """The right answer to another task of the same family that check() rejects for `task`:
    the error a sampling base model makes most (it answers about another word or list)."""
    for _ in range(100):
        candidate = sample_task(rng, task.family, split=split).output
        if not check(task.instruction, task.input, candidate):
            return candidate
    raise RuntimeError(f"no off-task answer found for {task!r}")


def held_out_tasks(n_per_family: int, seed: int = 0) -> list[WorldTask]:
    """n_per_family distinct evaluation tasks of each family, family by family.

    Drawn from the held-out side of the split (never in the corpus or the seeds) with a
    random stream of its own, so the same seed here and in the corpus do not correlate.
    """
    tasks = []
    for name in sorted(FAMILIES):
        rng = random.Random(f"world-heldout-{seed}-{name}")
        seen: set[tuple[str, str]] = set()
        misses_in_a_row = 0
        while len(seen) < n_per_family:
            task = sample_task(rng, name, split="heldout")
            key = (task.instruction, task.input)
            if key in seen:
                misses_in_a_row += 1
                if misses_in_a_row >= 3000:
                    raise ValueError(f"held_out_tasks: family {name} has fewer than "
                                     f"{n_per_family} distinct held-out tasks (found "
                                     f"{len(seen)}); ask for fewer per family")
                continue
            misses_in_a_row = 0
            seen.add(key)
            tasks.append(task)
    return tasks
