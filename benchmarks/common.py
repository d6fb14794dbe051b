"""What every benchmark script records next to its numbers: the machine, the library versions
and the code they came from, written as JSON under benchmarks/results/."""
from __future__ import annotations

import datetime
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=RESULTS_DIR.parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Device name, torch / triton / CUDA versions and the git commit (dirty or not)."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({platform.machine()})",
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_json(path: Path, payload: Any) -> Path:
    """Write payload as JSON to path through a temporary file and a rename, so a reader (or a
    run killed mid-write) never sees half a file. Benchmarks call it after every case with
    everything measured so far, into the folder given by --out (gpu_check.sh's $OUT)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


def write_results(name: str, results: Any, out_dir: Path | str | None = None, **extra: Any) -> Path:
    """Write {benchmark, environment, **extra, results} to OUT_DIR/NAME-TIME.json
    (default out_dir: benchmarks/results)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(out_dir or RESULTS_DIR) / f"{name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": environment(), **extra, "results": results}
    return save_json(path, payload)
