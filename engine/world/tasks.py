"""World tasks, the checker, and the split of every family's targets into three groups.

  taught     the inverse task is pretrained (both phrasings): M_0 knows these answers.
  practised  never inverted in pretraining; the loop may write and train on tasks about them
             (practice phrasing). Held-out accuracy asks about them in the heldout phrasing,
             which is never trained for these targets: a gain there is knowledge the loop
             found and learned, not a memorized question.
  kept_out   never inverted in pretraining and never in the loop's data: the extension drops
             synthesized tasks about them. A gain there is transfer only.

Forward facts and check traces are pretrained for every target of every group.
The split is fixed by the world (a hash of family and target), not by a run setting: the
shipped base model was pretrained on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from engine.world.families import FAMILIES

GROUPS = ("taught", "practised", "kept_out")
TAUGHT_SHARE, KEPT_OUT_SHARE = 1 / 3, 1 / 4


def _split(family: str) -> dict[int, str]:
    targets = FAMILIES[family].targets
    ranked = sorted(targets, key=lambda t: hashlib.md5(f"{family}:{t}".encode()).hexdigest())
    n_taught = round(len(ranked) * TAUGHT_SHARE)
    n_kept = round(len(ranked) * KEPT_OUT_SHARE)
    groups = {}
    for k, t in enumerate(ranked):
        groups[t] = "taught" if k < n_taught else "kept_out" if k < n_taught + n_kept else "practised"
    return groups


SPLIT: dict[str, dict[int, str]] = {name: _split(name) for name in FAMILIES}


def targets_in(group: str, family: str | None = None) -> list[tuple[str, int]]:
    """(family, target) pairs of a group, families in FAMILIES order, targets ascending."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    names = [family] if family else list(FAMILIES)
    return [(f, t) for f in names for t in sorted(SPLIT[f]) if SPLIT[f][t] == group]


@dataclass(frozen=True)
class WorldTask:
    """An inverse task: family, target, phrasing ("practice" / "heldout")."""
    family: str
    target: int
    phrasing: str = "practice"

    @property
    def instruction(self) -> str:
        return FAMILIES[self.family].question(self.target, self.phrasing)

    @property
    def group(self) -> str:
        return SPLIT[self.family][self.target]

    def output(self, k: int = 0) -> str:
        """The k-th right answer (modulo their number)."""
        answers = FAMILIES[self.family].solutions(self.target)
        return answers[k % len(answers)]


def parse_task(instruction: str, input: str = "") -> WorldTask | str:
    """The world task an instruction asks, or a short reason why it is none.

    Reasons: "not a world task", "has an input", "target out of range" (the number is not
    a product of the factor range, or no word has that code).
    """
    for name, family in FAMILIES.items():
        parsed = family.parse_question(instruction)
        if parsed is None:
            continue
        if input.strip():
            return "has an input"
        phrasing, target = parsed
        if target not in SPLIT[name]:
            return "target out of range"
        return WorldTask(name, target, phrasing)
    return "not a world task"


def check(instruction: str, input: str, response: str) -> bool | None:
    """True / False for an answer to a world task; None when the instruction is none."""
    task = parse_task(instruction, input)
    if isinstance(task, str):
        return None
    return FAMILIES[task.family].check(task.target, response).right
