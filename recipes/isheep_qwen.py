"""I-SHEEP: iterative self-alignment of a base model, end to end.

    torchrun recipes/isheep_qwen.py                       # the toy world, CPU, a few minutes
    torchrun --nproc_per_node 8 recipes/isheep_qwen.py --config recipes/configs/qwen2.5-0.5b.toml \\
        --model /path/to/Qwen2.5-0.5B
    ... [section.key=value ...]                             # any setting, e.g. assessment.threshold=7

A killed or interrupted run resumes where it stopped when started again with the same
command (same --run-dir). Paths in a config file are relative to that file; paths on the
command line are relative to the current directory.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # runnable from a checkout without installing

CONFIGS = ROOT / "recipes" / "configs"
DEFAULT_CONFIG = CONFIGS / "world_default.toml"


def _epilog() -> str:
    from engine.selfalign.settings import settings_help

    shipped = "\n".join(f"  {p.relative_to(ROOT)}" for p in sorted(CONFIGS.glob("*.toml")))
    return (f"shipped configs (default {DEFAULT_CONFIG.relative_to(ROOT)}):\n{shipped}\n\n"
            "settings (section.key = default  meaning):\n" + settings_help())


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_epilog())
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="TOML settings")
    p.add_argument("--model", help="HF checkpoint directory of the base model (run.model)")
    p.add_argument("--run-dir", help="where the run lives (run.run_dir); default runs/<name>")
    p.add_argument("--iterations", type=int, help="number of iterations (run.iterations)")
    p.add_argument("overrides", nargs="*", help="section.key=value settings")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    for flag, key in ((args.model, "run.model"), (args.run_dir, "run.run_dir"),
                      (args.iterations, "run.iterations")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    rank = int(os.environ.get("RANK", "0"))
    # our loggers only: libraries' INFO chatter (e.g. huggingface_hub's saves) stays out
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.getLogger("sheep").addHandler(handler)
    logging.getLogger("sheep").setLevel(logging.INFO if rank == 0 else logging.WARNING)
    from engine.selfalign.settings import load_config

    try:   # every setting (and the seed file) checked before any work, without loading torch
        cfg = load_config(args.config, overrides)
    except (ValueError, OSError) as e:
        if rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    from engine.errors import USER_ERRORS

    run = None
    try:
        from engine.selfalign.loop import run_isheep
        run = run_isheep(cfg)
    except USER_ERRORS as e:
        if rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if rank == 0:
            from engine.selfalign.loop import current_stage
            print(f"interrupted during {current_stage()}; run the same command again to resume",
                  file=sys.stderr)
        return 130
    if rank == 0:
        print(f"run directory: {run.root}\nreport: {run.root / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
