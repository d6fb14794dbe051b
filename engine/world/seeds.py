"""The loop's seed tasks in this world (its `synthesis.seeds_file`): the practice phrasing
over every taught target, so the meta-prompt never shows a task the model cannot answer and
never names a practised or kept-out target.

    write_seed_file("engine/world/data/seeds.jsonl")
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.selfalign.seeds import SeedTask
from engine.world.tasks import WorldTask, targets_in


def seed_tasks() -> list[SeedTask]:
    """One SeedTask per taught target, ids "world_<family>_<target>"."""
    tasks = [WorldTask(f, t) for f, t in targets_in("taught")]
    return [SeedTask(t.instruction, "", t.output(), f"world_{t.family}_{t.target}") for t in tasks]


def write_seed_file(path: str | os.PathLike) -> Path:
    """seed_tasks() as Self-Instruct seed lines
    ({"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification"})."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": s.id, "name": s.id, "instruction": s.instruction,
                         "instances": [{"input": "", "output": s.output}],
                         "is_classification": False}) for s in seed_tasks()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
