"""One labelled progress bar per stage: on rank 0 only, and quiet when stderr is not a
terminal (the stage's start, end and counts still go to run.log)."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def stage_bar(label: str, total: int, is_main: bool):
    """A tqdm bar over `total` records with rate and ETA."""
    return tqdm(total=total, desc=label, unit="rec", dynamic_ncols=True, leave=False,
                disable=not (is_main and sys.stderr.isatty()))
