"""What a run directory records about itself: its settings (locked once work is done) and
every invocation that worked on it.

config.toml holds the resolved settings. Once any stage is done, a resumed run must carry
the same decisions: a changed setting that is not marked mutable (engine.settings.setting)
is refused with the list of differing keys. environment.json gains one entry per
invocation: time, command line, commit, package versions, device, threads.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from engine.selfalign.records import atomic_write_json, atomic_write_text
from engine.selfalign.settings import IsheepConfig, mutable_keys
from engine.settings import SettingsError, flatten, read_toml

CONFIG = "config.toml"
ENVIRONMENT = "environment.json"
# changing these moves or relabels the run; no data decision depends on them
_NEVER_LOCKED = {"run.name", "run.controls"}


def _flat_dict(tree: dict, leaf_keys: set[str], prefix: str = "") -> dict:
    """A saved TOML tree as {dotted key: value}; a table that is itself a setting's value (a
    key of `leaf_keys`, e.g. run.controls) stays whole."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and prefix + k not in leaf_keys:
            out.update(_flat_dict(v, leaf_keys, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def check_resume_settings(cfg: IsheepConfig, run) -> None:
    """Refuse to resume a run whose finished stages were decided under other settings."""
    path = run.root / CONFIG
    if not path.is_file() or not any(info.get("status") == "done"
                                     for it in run.manifest["iterations"].values()
                                     for info in it["stages"].values()):
        return
    now = {k: v for k, v in flatten(cfg).items() if v is not None}
    saved = _flat_dict(read_toml(path), set(now))
    free = mutable_keys(cfg) | _NEVER_LOCKED
    changed = sorted(k for k in set(saved) | set(now)
                     if k not in free and saved.get(k) != now.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:8])
        raise SettingsError(
            f"{path}: this run directory was made with other settings ({detail}"
            f"{' ...' if len(changed) > 8 else ''}); its finished stages decided under the old "
            "ones. Use a new --run-dir, or the saved settings. Settings a resumed run may "
            f"change: {', '.join(sorted(mutable_keys(cfg)))}")


def save_config(cfg: IsheepConfig, run) -> None:
    text = (f"# resolved settings of this run (profile {cfg.run.profile}); written by "
            "recipes/isheep_qwen.py\n" + cfg.to_toml())
    atomic_write_text(run.root / CONFIG, text)


def git_commit() -> str:
    """HEAD of the checkout the engine runs from (+dirty), or "unknown"."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def device_name() -> str:
    """The GPU's name, else the CPU's model name."""
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def environment_entry(cfg: IsheepConfig) -> dict:
    import torch
    from engine.distributed import rank_and_world
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "cwd": os.getcwd(),
            "commit": git_commit(), "python": platform.python_version(),
            "versions": {p: package_version(p) for p in ("torch", "triton", "transformers", "tokenizers",
                                                  "lm-eval")},
            "device": device_name(), "cuda": torch.cuda.is_available(),
            "threads": torch.get_num_threads(), "world_size": rank_and_world()[1],
            "host": platform.node(), "profile": cfg.run.profile}


def record_invocation(cfg: IsheepConfig, run) -> None:
    """Append this invocation to environment.json (a list: a resumed run shows them all)."""
    path = run.root / ENVIRONMENT
    entries = []
    if path.is_file():
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError:
            entries = []
        if not isinstance(entries, list):
            entries = [entries]
    entries.append(environment_entry(cfg))
    atomic_write_json(path, entries)
