"""The run directory: where every stage's output lands, and what lets a killed run resume.

    runs/NAME/
      config.toml      resolved settings        manifest.json   stage status, counts, seconds
      iter_01/ prompts.jsonl responses.jsonl assessed.jsonl train.jsonl model/ eval.json stats.json
      report.md  plots/*.png

A stage is done when the manifest says so; its output was renamed into place before that.
Generation stages append finished work to `<name>.partial.jsonl` as they go, so a restart
continues from what is on disk instead of starting the stage over.
"""
from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from engine.selfalign.records import atomic_write_json, read_jsonl

MANIFEST = "manifest.json"


class RunDirectory:
    def __init__(self, root: str | os.PathLike, is_writer: bool = True):
        self.root = Path(root)
        self.is_writer = is_writer          # only rank 0 writes; other ranks read
        self.manifest = self._read_manifest()

    # --- paths ------------------------------------------------------------------------
    def iter_dir(self, iteration: int) -> Path:
        return self.root / f"iter_{iteration:02d}"

    def path(self, iteration: int, name: str) -> Path:
        return self.iter_dir(iteration) / name

    def partial(self, iteration: int, name: str) -> Path:
        """Where a generation stage appends its finished chunks before the final rename."""
        stem = name[:-len(".jsonl")] if name.endswith(".jsonl") else name
        return self.iter_dir(iteration) / f"{stem}.partial.jsonl"

    def model_dir(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "model"

    # --- manifest ---------------------------------------------------------------------
    def _read_manifest(self) -> dict:
        path = self.root / MANIFEST
        if not path.is_file():
            return {"iterations": {}, "created": time.time()}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RuntimeError(f"{path}: corrupt manifest (line {e.lineno}: {e.msg}); "
                               "it is written atomically, so this file was edited by hand") from None

    def _stages(self, iteration: int) -> dict:
        return self.manifest["iterations"].setdefault(str(iteration), {"stages": {}})["stages"]

    def stage_done(self, iteration: int, stage: str) -> bool:
        return self._stages(iteration).get(stage, {}).get("status") == "done"

    def stage_info(self, iteration: int, stage: str) -> dict:
        return self._stages(iteration).get(stage, {})

    def mark_done(self, iteration: int, stage: str, counts: dict, seconds: float) -> None:
        info = self._stages(iteration).get(stage, {})
        # a resumed stage adds the time of every attempt
        info.update(status="done", counts=counts, seconds=info.get("seconds", 0.0) + seconds,
                    finished=time.time())
        self._stages(iteration)[stage] = info
        self.save_manifest()

    def add_partial_time(self, iteration: int, stage: str, seconds: float) -> None:
        info = self._stages(iteration).setdefault(stage, {"status": "running"})
        info["seconds"] = info.get("seconds", 0.0) + seconds
        self.save_manifest()

    def save_manifest(self) -> None:
        if self.is_writer:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.root / MANIFEST, self.manifest)

    def all_counts(self) -> dict[int, dict[str, dict]]:
        """iteration -> stage -> counts, for the report."""
        return {int(i): {s: v.get("counts", {}) for s, v in it["stages"].items()}
                for i, it in sorted(self.manifest["iterations"].items(), key=lambda kv: int(kv[0]))}

    def stage_seconds(self) -> dict[int, dict[str, float]]:
        return {int(i): {s: v.get("seconds", 0.0) for s, v in it["stages"].items()}
                for i, it in sorted(self.manifest["iterations"].items(), key=lambda kv: int(kv[0]))}

    @contextmanager
    def timed_stage(self, iteration: int, stage: str):
        """Times a stage; on an exception (a kill is not caught) the spent time is kept."""
        start = time.time()
        box: dict = {}
        try:
            yield box
        except BaseException:
            self.add_partial_time(iteration, stage, time.time() - start)
            raise
        self.mark_done(iteration, stage, box.get("counts", {}), time.time() - start)

    def read(self, iteration: int, name: str) -> list[dict]:
        return read_jsonl(self.path(iteration, name))

    # --- deterministic faults, for the resume tests -----------------------------------------
    def fault_point(self, iteration: int, name: str) -> None:
        """Called after every chunk a generation stage saves. With SHEEP_FAULT set to
        "<file>:<n>:<exit|sigint>" (e.g. "responses.jsonl:2:exit"), the n-th save of that
        file in this process ends the process as a kill would (exit: no clean-up at all) or
        as Ctrl-C would (sigint: KeyboardInterrupt). For tests; a fault at a known point
        replaces a race against the wall clock."""
        spec = os.environ.get("SHEEP_FAULT")
        if not spec:
            return
        target, n, kind = spec.split(":")
        if target != name:
            return
        self._fault_count = getattr(self, "_fault_count", 0) + 1
        if self._fault_count == int(n):
            if kind == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0)      # let the interpreter run the handler
                raise KeyboardInterrupt
            os._exit(137)
