"""Seed tasks: the human-written examples the meta-prompt shows the model.

Two line formats are read, one JSON object a line:

  Self-Instruct / Alpaca seed format
    {"id": ..., "name": ..., "instruction": ..., "is_classification": bool,
     "instances": [{"input": ..., "output": ...}, ...]}
  flat form
    {"instruction": ..., "input": ..., "output": ...}        (id, input, output optional)

Like the reference (Alpaca's and I-SHEEP's generate_instruction.py), a seed with several
instances contributes its first instance only. Any malformed line raises one SeedFormatError
naming the file and line number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.jsonl import json_records

DEFAULT_SEED_PATH = Path(__file__).parent / "data" / "seed_tasks.jsonl"


class SeedFormatError(ValueError):
    """A seed file line that cannot be read as a seed task (names file and line)."""


@dataclass(frozen=True)
class SeedTask:
    instruction: str
    input: str
    output: str
    id: str


def _expect_str(obj: dict, key: str, where: str, required: bool) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise SeedFormatError(f"{where}: missing '{key}'")
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise SeedFormatError(f"{where}: '{key}' must be a string, got {type(value).__name__}")
    return value


def _parse_seed(obj: dict, where: str, default_id: str) -> SeedTask:
    instruction = _expect_str(obj, "instruction", where, required=True)
    if not instruction.strip():
        raise SeedFormatError(f"{where}: 'instruction' is empty")
    raw_id = obj.get("id", default_id)
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool):
        raise SeedFormatError(f"{where}: 'id' must be a string or integer")
    if "is_classification" in obj and not isinstance(obj["is_classification"], bool):
        raise SeedFormatError(f"{where}: 'is_classification' must be true or false")
    if "name" in obj and not isinstance(obj["name"], str):
        raise SeedFormatError(f"{where}: 'name' must be a string")

    if "instances" in obj:
        instances = obj["instances"]
        if not isinstance(instances, list) or not instances:
            raise SeedFormatError(f"{where}: 'instances' must be a non-empty list")
        for k, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise SeedFormatError(f"{where}: instances[{k}] must be an object")
            _expect_str(instance, "input", f"{where}: instances[{k}]", required=False)
            _expect_str(instance, "output", f"{where}: instances[{k}]", required=True)
        first = instances[0]
        task_input, output = first.get("input") or "", first["output"]
    else:
        task_input = _expect_str(obj, "input", where, required=False)
        output = _expect_str(obj, "output", where, required=False)
    return SeedTask(instruction=instruction, input=task_input, output=output, id=str(raw_id))


def read_seed_tasks(path: str | os.PathLike) -> list[SeedTask]:
    """Read a seed file (either format, may mix) into SeedTasks; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: seed file not found")
    seeds: list[SeedTask] = []
    first_line_of_id: dict[str, int] = {}
    for lineno, obj in json_records(path, SeedFormatError):
        where = f"{path}:{lineno}"
        seed = _parse_seed(obj, where, default_id=f"line_{lineno}")
        if seed.id in first_line_of_id:
            raise SeedFormatError(
                f"{where}: id {seed.id!r} already used on line {first_line_of_id[seed.id]}")
        first_line_of_id[seed.id] = lineno
        seeds.append(seed)
    if not seeds:
        raise SeedFormatError(f"{path}: no seed tasks in file")
    return seeds


def load_default_seeds() -> list[SeedTask]:
    """The seed set shipped with the engine (written for this project, Self-Instruct format)."""
    return read_seed_tasks(DEFAULT_SEED_PATH)
