"""Triton kernels, one file per kernel, each with the torch reference it is tested against.

The `*_reference` functions are plain torch and run anywhere; the Triton entry points need
CUDA or `TRITON_INTERPRET=1`. `engine.ops` picks between them; models never import this
package directly.
"""
