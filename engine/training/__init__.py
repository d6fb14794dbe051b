"""Supervised fine-tuning: JSONL data, packing, FSDP2, LoRA, checkpoints, HF export.

    from engine.training import TrainConfig, train
    result = train(TrainConfig(model="base_dir", data=["train.jsonl"], output="run", lr=1e-5))
"""
from engine.training.config import TrainConfig, apply_overrides
from engine.training.data import DataError, format_raw_prompt
from engine.training.trainer import TrainingDiverged, TrainResult, train

__all__ = ["TrainConfig", "apply_overrides", "train", "TrainResult", "TrainingDiverged",
           "DataError", "format_raw_prompt"]
