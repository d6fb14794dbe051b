"""Supervised fine-tuning: JSONL data, packing, FSDP2, LoRA, checkpoints, HF export.

    from engine.training import TrainConfig, train
    result = train(TrainConfig(model="base_dir", data=["train.jsonl"], output="run", lr=1e-5))

Imports are lazy: `from engine.training.config import TrainConfig` (the loop's settings) does
not load the distributed machinery.
"""
from engine import lazy_exports

_EXPORTS = {
    "TrainConfig": "engine.training.config",
    "apply_overrides": "engine.training.config",
    "DataError": "engine.training.data",
    "train": "engine.training.trainer",
    "TrainResult": "engine.training.trainer",
    "TrainingDiverged": "engine.training.trainer",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports("engine.training", _EXPORTS)
