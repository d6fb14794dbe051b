"""Supervised fine-tuning: JSONL data, packing, FSDP2, LoRA, checkpoints, HF export.

    from engine.training import TrainConfig, train
    result = train(TrainConfig(model="base_dir", data=["train.jsonl"], output="run", lr=1e-5))

Imports are lazy: `from engine.training.data import format_raw_prompt` (used by generation
and the I-SHEEP loop) does not load the distributed machinery.
"""
_EXPORTS = {
    "TrainConfig": "engine.training.config",
    "apply_overrides": "engine.training.config",
    "DataError": "engine.training.data",
    "format_raw_prompt": "engine.training.data",
    "train": "engine.training.trainer",
    "TrainResult": "engine.training.trainer",
    "TrainingDiverged": "engine.training.trainer",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'engine.training' has no attribute {name!r}")
