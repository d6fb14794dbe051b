"""Fine-tune from the command line, on one process or many.

    python -m engine.train --model DIR --data FILE.jsonl --output DIR [key=value ...]
    torchrun --nproc_per_node 8 -m engine.train --model DIR --data FILE.jsonl --output DIR lora=true

key=value sets any TrainConfig field (lr=2e-5 epochs=3 lora_targets=q_proj,v_proj max_steps=none);
--config FILE.toml reads settings first (top-level keys or a [train] table), key=value wins.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from engine.training.config import ConfigError, TrainConfig, apply_overrides, load_toml


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m engine.train",
                                description="Supervised fine-tuning (full or LoRA) with FSDP2.",
                                epilog="Settings: " + ", ".join(TrainConfig.__dataclass_fields__))
    p.add_argument("--model", help="HF checkpoint directory to start from")
    p.add_argument("--data", action="append", help="JSONL file (repeat for several)")
    p.add_argument("--output", help="run directory")
    p.add_argument("--config", help="TOML file of settings")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    cfg = TrainConfig()
    if args.config:
        cfg = apply_overrides(cfg, load_toml(args.config), source=args.config)
    named = {k: v for k, v in (("model", args.model), ("data", args.data), ("output", args.output))
             if v is not None}
    cfg = apply_overrides(cfg, named)
    return apply_overrides(cfg, args.overrides)


def main(argv: list[str] | None = None) -> int:
    from engine.checkpoint import CheckpointError
    from engine.config import ConfigError as ModelConfigError
    from engine.tokenizer import TokenizerError
    from engine.training.data import DataError
    from engine.training.trainer import ResumeError, TrainingDiverged, train

    try:
        cfg = parse_args(argv)
        result = train(cfg)
    except (ConfigError, ModelConfigError, CheckpointError, TokenizerError, DataError,
            ResumeError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({"final_loss": result.final_loss, "steps": result.steps,
                          "tokens": result.tokens, "model_dir": result.model_dir,
                          "output_dir": result.output_dir, "data": result.data}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
