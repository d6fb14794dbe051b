"""Triton SwiGLU against the torch reference: forward and both gradients."""
import pytest
import torch

from conftest import DEVICE
from kernels.swiglu import swiglu, swiglu_reference

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _compare(gate, up, dtype):
    grad = torch.randn(gate.shape, dtype=dtype, device=DEVICE)
    ga, ua = gate.detach().clone().requires_grad_(), up.detach().clone().requires_grad_()
    gb, ub = gate.detach().clone().requires_grad_(), up.detach().clone().requires_grad_()
    out_a, out_b = swiglu(ga, ua), swiglu_reference(gb, ub)
    assert out_a.dtype == out_b.dtype and out_a.shape == out_b.shape
    torch.testing.assert_close(out_a, out_b, **TOL[dtype])
    out_a.backward(grad)
    out_b.backward(grad)
    torch.testing.assert_close(ga.grad, gb.grad, **TOL[dtype])
    torch.testing.assert_close(ua.grad, ub.grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_matches_reference_forward_and_grads(dtype):
    torch.manual_seed(0)
    gate = 3 * torch.randn(2, 19, 72, dtype=dtype, device=DEVICE)
    up = torch.randn(2, 19, 72, dtype=dtype, device=DEVICE)
    _compare(gate, up, dtype)


def test_swiglu_reads_the_halves_of_a_fused_projection_in_place():
    torch.manual_seed(1)
    gate_up = torch.randn(13, 2 * 40, device=DEVICE)
    gate, up = gate_up.chunk(2, dim=-1)
    assert not gate.is_contiguous()
    _compare(gate, up, torch.float32)
