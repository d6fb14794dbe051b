"""Seed tasks for running the loop in the toy world (its `synthesis.seeds_file`).

The seeds cover the families in turn, come from the training side of the held-out split,
and are written in the Self-Instruct seed format that engine.selfalign.seeds reads.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from engine.selfalign.seeds import SeedTask
from engine.world.families import FAMILIES
from engine.world.tasks import WorldTask, sample_task


def seed_world_tasks(n: int, seed: int = 0) -> list[WorldTask]:
    """n distinct training-side world tasks, families taken in turn (sorted by name)."""
    rng = random.Random(f"world-seeds-{seed}")
    names = sorted(FAMILIES)
    tasks: list[WorldTask] = []
    seen: set[tuple[str, str]] = set()
    while len(tasks) < n:
        task = sample_task(rng, names[len(tasks) % len(names)])
        if (task.instruction, task.input) not in seen:
            seen.add((task.instruction, task.input))
            tasks.append(task)
    return tasks


def seed_tasks_for_world(n: int = 36, seed: int = 0) -> list[SeedTask]:
    """The same tasks as SeedTasks, ids "world_seed_0", "world_seed_1", ..."""
    return [SeedTask(t.instruction, t.input, t.output, f"world_seed_{k}")
            for k, t in enumerate(seed_world_tasks(n, seed))]


def write_seed_file(path: str | os.PathLike, n: int = 36, seed: int = 0) -> Path:
    """Write seed_tasks_for_world(n, seed) as Self-Instruct seed lines
    ({"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification"})."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, task in enumerate(seed_world_tasks(n, seed)):
        lines.append(json.dumps({
            "id": f"world_seed_{k}", "name": f"{task.family}_{k}",
            "instruction": task.instruction,
            "instances": [{"input": task.input, "output": task.output}],
            "is_classification": False}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
