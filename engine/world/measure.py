"""Plain measures over checked answers and judge decisions (no model here).

  accuracy        share right, its binomial standard error, n
  group_accuracy  the same over (family, right) items, with a per-family breakdown
  judge_quality   a judge's keep decisions against the checker: precision, recall, accuracy,
                  and the base rate of right answers among the judged pairs
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence


def accuracy(flags: Sequence[bool]) -> dict:
    """{"accuracy", "stderr", "n"}: share of True and sqrt(p (1 - p) / n); None when n = 0."""
    n = len(flags)
    if n == 0:
        return {"accuracy": None, "stderr": None, "n": 0}
    p = sum(bool(f) for f in flags) / n
    return {"accuracy": round(p, 4), "stderr": round(math.sqrt(p * (1 - p) / n), 4), "n": n}


def group_accuracy(items: Iterable[tuple[str, bool]]) -> dict:
    """items: (family, right) -> accuracy(all) plus "per_family": {family: accuracy(...)}."""
    by_family = defaultdict(list)
    flags = []
    for family, right in items:
        by_family[family].append(right)
        flags.append(right)
    return {**accuracy(flags), "per_family": {f: accuracy(v) for f, v in sorted(by_family.items())}}


def judge_quality(right: Sequence[bool], kept: Sequence[bool]) -> dict:
    """A judge's keep decisions against the truth, pair by pair.

    precision = right among kept (None when nothing kept), recall = kept among right (None
    when nothing is right), accuracy = decisions that match the truth, base_rate = right
    among all pairs; each with n.
    """
    if len(right) != len(kept):
        raise ValueError(f"judge_quality: {len(right)} truths but {len(kept)} decisions")
    tp = sum(r and k for r, k in zip(right, kept))
    n_kept, n_right, n = sum(map(bool, kept)), sum(map(bool, right)), len(right)

    def share(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {"precision": share(tp, n_kept), "recall": share(tp, n_right),
            "accuracy": share(sum(bool(r) == bool(k) for r, k in zip(right, kept)), n),
            "base_rate": share(n_right, n), "kept": n_kept, "right": n_right, "n": n}
