"""Experiment tracking: one interface, one class per backend (TensorBoard, Weights & Biases).

    tracker = make_tracker("tensorboard", run_dir / "tensorboard")
    tracker.log({"train/loss": 2.13, "train/lr": 1e-5}, step=3)
    tracker.close()

The backends are optional extras, imported only when chosen; a missing one fails at once with
the extra to install. Only the writer rank makes a real tracker; other ranks get the no-op
base class, so callers never test the rank themselves.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

TRACKERS = ("none", "tensorboard", "wandb")


class TrackerError(RuntimeError):
    """A tracker that cannot be started (its package is missing); the message names the extra."""


class Tracker:
    """The interface, and the "none" backend: every call does nothing."""

    def log(self, metrics: dict[str, float | int | None], step: int) -> None:
        """Scalars at one step; None values (e.g. MFU on a CPU) are left out."""

    def close(self) -> None:
        """Flush and release the backend's files; call once at the end of the run."""


class TensorBoardTracker(Tracker):
    """Scalars in TensorBoard event files under log_dir (tensorboard --logdir log_dir)."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackerError(_missing("tensorboard")) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, metrics: dict[str, float | int | None], step: int) -> None:
        for name, value in metrics.items():
            if value is not None:
                self.writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """A Weights & Biases run (project $WANDB_PROJECT or "sheep-engine"); its files go to
    $WANDB_DIR when set, else to log_dir. WANDB_MODE=offline keeps everything local."""

    def __init__(self, log_dir: str | Path, run_name: str | None = None, config: dict | None = None):
        try:
            import wandb
        except ImportError:
            raise TrackerError(_missing("wandb")) from None
        directory = Path(os.environ.get("WANDB_DIR") or log_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "sheep-engine"), name=run_name,
                              dir=str(directory), config=config or {})

    def log(self, metrics: dict[str, float | int | None], step: int) -> None:
        self.run.log({k: v for k, v in metrics.items() if v is not None}, step=step)

    def close(self) -> None:
        self.run.finish()


def check_installed(kind: str) -> None:
    """Fail now, before any model loads, when the chosen tracker's package is missing."""
    if kind not in TRACKERS:
        raise TrackerError(f"tracker = {kind!r}: expected one of {', '.join(TRACKERS)}")
    if kind != "none" and importlib.util.find_spec(kind) is None:
        raise TrackerError(_missing(kind))


def make_tracker(kind: str, log_dir: str | Path, *, enabled: bool = True, run_name: str | None = None,
                 config: dict | None = None) -> Tracker:
    """The tracker named by `kind` (one of TRACKERS) writing under log_dir; the no-op one where
    kind is "none" or enabled is False (ranks other than the writer)."""
    check_installed(kind)
    if kind == "none" or not enabled:
        return Tracker()
    if kind == "tensorboard":
        return TensorBoardTracker(log_dir)
    return WandbTracker(log_dir, run_name, config)


def _missing(extra: str) -> str:
    return (f"tracker = {extra!r} needs the {extra} package: pip install 'sheep-engine[{extra}]' "
            f"(or pip install {extra})")
