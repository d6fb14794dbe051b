"""sheep-engine: one model implementation for generation, self-scoring and fine-tuning.

Public API (stable names): load_model, save_pretrained, Tokenizer, LLM, SamplingParams.
Imports are lazy so that `import engine` stays cheap and the pieces load independently.
"""

_EXPORTS = {
    "load_model": "engine.checkpoint",
    "save_pretrained": "engine.checkpoint",
    "Tokenizer": "engine.tokenizer",
    "LLM": "engine.generation",
    "SamplingParams": "engine.generation",
}

__all__ = list(_EXPORTS)


def lazy_exports(package: str, exports: dict[str, str]):
    """A module __getattr__ that imports each exported name from its module on first use."""
    def __getattr__(name: str):
        if name in exports:
            import importlib
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__


__getattr__ = lazy_exports("engine", _EXPORTS)
