"""Which pairs train, on which data, from which model (I-SHEEP steps 7 and 8).

The reference keeps a pair when quality > 8 and following > 8, i.e. strictly above the
threshold; a score that could not be parsed (None) fails every level that needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ASSESSMENT_LEVELS = ("none", "quality", "following", "both")
DATA_MODES = ("latest", "cumulative")
START_MODES = ("base", "previous")

_NEEDED_SCORES = {"none": (), "quality": ("quality",), "following": ("following",),
                  "both": ("quality", "following")}


def passes(scores: Mapping[str, float | None], level: str, threshold: float) -> bool:
    """Whether a pair's scores clear the threshold at this assessment level.

    scores: {"quality": int | float | None, "following": ...}; only the kinds the level
    needs are read, and each must be present, not None, and > threshold.
    """
    if level not in _NEEDED_SCORES:
        raise ValueError(f"assessment level must be one of {ASSESSMENT_LEVELS}, got {level!r}")
    for kind in _NEEDED_SCORES[level]:
        value = scores.get(kind)
        if value is None or not value > threshold:
            return False
    return True


def select_training_data(records_by_iteration: Mapping[int, Sequence[dict]],
                         mode: str = "latest") -> list[dict]:
    """The SFT data for the newest iteration in records_by_iteration.

    records_by_iteration: iteration number -> that iteration's kept records.
    "latest": the newest iteration's records only (the reference's D_i).
    "cumulative": every iteration's records, oldest first; a record whose "id" was
    already taken is skipped, so nothing trains twice.
    """
    if mode not in DATA_MODES:
        raise ValueError(f"data mode must be one of {DATA_MODES}, got {mode!r}")
    if not records_by_iteration:
        return []
    iterations = sorted(records_by_iteration)
    if mode == "latest":
        return list(records_by_iteration[iterations[-1]])
    selected, seen = [], set()
    for iteration in iterations:
        for record in records_by_iteration[iteration]:
            rid = record.get("id")
            if rid is not None:
                if rid in seen:
                    continue
                seen.add(rid)
            selected.append(record)
    return selected


def choose_start_model(mode: str, base_dir: str | os.PathLike,
                       previous_dir: str | os.PathLike | None) -> Path:
    """The checkpoint the iteration fine-tunes from.

    "base": always M_0 (the reference). "previous": M_{i-1}, or M_0 in the first
    iteration (previous_dir None). The chosen folder must exist.
    """
    if mode not in START_MODES:
        raise ValueError(f"start mode must be one of {START_MODES}, got {mode!r}")
    chosen = Path(previous_dir) if mode == "previous" and previous_dir is not None \
        else Path(base_dir)
    if not chosen.is_dir():
        raise FileNotFoundError(f"{chosen}: start model folder not found (start mode {mode!r})")
    return chosen
