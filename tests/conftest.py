import os

import torch

# Triton kernels run through the interpreter on machines without CUDA; it must be set
# before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# one thread: tiny ops lose more to thread hand-off than they gain, and subprocess tests
# (torchrun ranks) share the two cores
torch.set_num_threads(1)
