"""dtype names as they appear in settings and HF config.json ("bfloat16", "torch.float16", ...)."""
from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16, "half": torch.float16}


def dtype_of(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or its name; ValueError naming the choices otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).replace("torch.", "")
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {name!r} (use float32, bfloat16 or float16)")
    return DTYPES[name]
