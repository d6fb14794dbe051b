"""I-SHEEP: iterative self-alignment of a base model, end to end.

    torchrun recipes/isheep_qwen.py                              # tiny random model, CPU, minutes
    torchrun --nproc_per_node 8 recipes/isheep_qwen.py --config recipes/configs/qwen2.5-0.5b.toml \
        --model /path/to/Qwen2.5-0.5B
    ... [section.key=value ...]                                    # any setting, e.g. assessment.threshold=7

A killed run resumes where it stopped when started again with the same --run-dir.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # runnable from a checkout without installing

from engine.selfalign.loop import run_isheep  # noqa: E402
from engine.selfalign.settings import SettingsError, load_config  # noqa: E402

DEFAULT_CONFIG = ROOT / "recipes" / "configs" / "tiny.toml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="TOML settings (default: tiny.toml)")
    p.add_argument("--model", help="HF checkpoint directory of the base model (run.model)")
    p.add_argument("--run-dir", help="where the run lives (run.run_dir); default runs/<name>")
    p.add_argument("--iterations", type=int, help="number of iterations (run.iterations)")
    p.add_argument("overrides", nargs="*", help="section.key=value settings")
    args = p.parse_args(argv)
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"run.model={args.model}")
    if args.run_dir:
        overrides.append(f"run.run_dir={args.run_dir}")
    if args.iterations is not None:
        overrides.append(f"run.iterations={args.iterations}")
    try:
        cfg = load_config(args.config, overrides)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run = run_isheep(cfg)
    if rank == 0:
        print(f"run directory: {run.root}\nreport: {run.root / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
