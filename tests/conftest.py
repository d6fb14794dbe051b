import os

import pytest
import torch

# Where the kernel tests build their tensors: CUDA runs the Triton kernels natively (the GPU
# check), CPU runs them through the interpreter. Tests import it (`from conftest import
# DEVICE`: tests/ is on sys.path) or take the `device` fixture.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Triton kernels run through the interpreter on machines without CUDA; it must be set
# before triton is first imported.
if DEVICE == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

# one thread: tiny ops lose more to thread hand-off than they gain, and subprocess tests
# (torchrun ranks) share the two cores
torch.set_num_threads(1)


@pytest.fixture
def device() -> str:
    """The test device: "cuda" when available, else "cpu"."""
    return DEVICE
