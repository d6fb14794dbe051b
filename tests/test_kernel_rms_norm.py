"""Triton RMSNorm / fused add+RMSNorm against the torch reference: forward and gradients."""
import pytest
import torch

from conftest import DEVICE
from kernels.rms_norm import add_rms_norm, add_rms_norm_reference, rms_norm, rms_norm_reference

# fp32: same math, only summation order differs. bf16: outputs are rounded to bf16 (2^-8
# relative; the CPU interpreter truncates, 2^-7), and the reference's bf16 autograd rounds
# its intermediates as well.
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
GRAD_TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.bfloat16: dict(atol=5e-2, rtol=3e-2)}


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_matches_reference_forward_and_grads(dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 13, 48, dtype=dtype, device=DEVICE)   # 39 rows, D not a power of two
    w = (1 + 0.1 * torch.randn(48, device=DEVICE)).to(dtype)
    grad = torch.randn(3, 13, 48, dtype=dtype, device=DEVICE)
    xa, wa = _leaves(x, w)
    xb, wb = _leaves(x, w)
    ya = rms_norm(xa, wa, 1e-6)
    yb = rms_norm_reference(xb, wb, 1e-6)
    assert ya.dtype == yb.dtype and ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, **TOL[dtype])
    ya.backward(grad)
    yb.backward(grad)
    torch.testing.assert_close(xa.grad, xb.grad, **GRAD_TOL[dtype])
    torch.testing.assert_close(wa.grad, wb.grad, **GRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_rms_norm_matches_reference_and_routes_both_gradients(dtype):
    torch.manual_seed(1)
    x, r = (torch.randn(37, 64, dtype=dtype, device=DEVICE) for _ in range(2))
    w = (1 + 0.1 * torch.randn(64, device=DEVICE)).to(dtype)
    gy, gs = (torch.randn(37, 64, dtype=dtype, device=DEVICE) for _ in range(2))
    xa, ra, wa = _leaves(x, r, w)
    xb, rb, wb = _leaves(x, r, w)
    ya, sa = add_rms_norm(xa, ra, wa, 1e-5)
    yb, sb = add_rms_norm_reference(xb, rb, wb, 1e-5)
    # the sum is rounded once to its dtype (within one bf16 ulp: the interpreter truncates)
    torch.testing.assert_close(sa, sb, atol=0, rtol=0 if dtype == torch.float32 else 2**-7)
    torch.testing.assert_close(ya, yb, **TOL[dtype])
    # the residual stream's own gradient must be added to the norm's
    (ya * gy + sa * gs).sum().backward()
    (yb * gy + sb * gs).sum().backward()
    for ours, ref in ((xa.grad, xb.grad), (ra.grad, rb.grad), (wa.grad, wb.grad)):
        torch.testing.assert_close(ours, ref, **GRAD_TOL[dtype])


def test_add_rms_norm_when_only_the_normed_output_is_used():
    torch.manual_seed(2)
    x, r = torch.randn(5, 32, device=DEVICE), torch.randn(5, 32, device=DEVICE)
    w = torch.rand(32, device=DEVICE) + 0.5
    xa, ra, wa = _leaves(x, r, w)
    xb, rb, wb = _leaves(x, r, w)
    add_rms_norm(xa, ra, wa, 1e-6)[0].square().sum().backward()
    add_rms_norm_reference(xb, rb, wb, 1e-6)[0].square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ra.grad, rb.grad, atol=1e-4, rtol=1e-4)


def test_rms_norm_accepts_a_strided_view():
    torch.manual_seed(3)
    big = torch.randn(9, 80, device=DEVICE)
    x = big[:, 8:72]                       # rows 80 apart, last dim contiguous
    w = torch.rand(64, device=DEVICE) + 0.5
    torch.testing.assert_close(rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6),
                               atol=1e-5, rtol=1e-5)
