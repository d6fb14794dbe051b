"""Chunked linear + cross-entropy (Triton row kernel) against logits-then-F.cross_entropy."""
import pytest
import torch

from conftest import DEVICE
from kernels.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_reference

# fp32: the loss sums ~40 fp32 terms. bf16: logits and d(logits) are rounded to bf16 before
# the gradient matmuls (the reference rounds the same logits but keeps its d(logits) in fp32).
TOL = {torch.float32: dict(atol=1e-4, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=1e-2)}
GRAD_TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.bfloat16: dict(atol=1e-2, rtol=3e-2)}


def _labels(n, vocab, ignore_index, gen):
    labels = torch.randint(0, vocab, (n,), generator=gen, device=DEVICE)
    masked = torch.rand(n, generator=gen, device=DEVICE) < 0.3     # prompt tokens are masked
    labels[masked] = ignore_index
    return labels


@pytest.mark.parametrize("dtype,reduction,grad_output", [
    (torch.float32, "sum", 1.0), (torch.float32, "mean", 0.5), (torch.bfloat16, "mean", 1.0)])
def test_matches_reference_loss_and_grads(dtype, reduction, grad_output):
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    n, d, vocab = 37, 32, 203      # 3 chunks of 16 tokens, vocab split over 4 blocks of 64
    hidden = torch.randn(n, d, generator=gen, device=DEVICE).to(dtype)
    weight = (0.3 * torch.randn(vocab, d, generator=gen, device=DEVICE)).to(dtype)
    labels = _labels(n, vocab, -100, gen)
    ha, wa = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    hb, wb = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss_a = linear_cross_entropy(ha, wa, labels, -100, reduction)
    loss_b = linear_cross_entropy_reference(hb, wb, labels, -100, reduction)
    assert loss_a.dtype == torch.float32 and loss_a.dim() == 0
    torch.testing.assert_close(loss_a, loss_b, **TOL[dtype])
    (loss_a * grad_output).backward()
    (loss_b * grad_output).backward()
    assert ha.grad.dtype == dtype and wa.grad.dtype == dtype
    torch.testing.assert_close(ha.grad, hb.grad, **GRAD_TOL[dtype])
    torch.testing.assert_close(wa.grad, wb.grad, **GRAD_TOL[dtype])


def test_custom_ignore_index_and_frozen_head():
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    hidden = torch.randn(21, 16, generator=gen, device=DEVICE)
    weight = torch.randn(130, 16, generator=gen, device=DEVICE)   # frozen lm_head (e.g. LoRA)
    labels = _labels(21, 130, 7, gen)
    labels[labels == 7] = 8
    labels[::4] = 7                                        # ignore_index that is a real token id
    ha, hb = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    loss_a = linear_cross_entropy(ha, weight, labels, ignore_index=7, reduction="mean",
                                  chunk_tokens=8)
    loss_b = linear_cross_entropy_reference(hb, weight, labels, ignore_index=7, reduction="mean")
    torch.testing.assert_close(loss_a, loss_b, **TOL[torch.float32])
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(ha.grad, hb.grad, **GRAD_TOL[torch.float32])
    assert ha.grad[::4].abs().max() == 0       # ignored tokens get no gradient


def test_no_grad_returns_the_loss_only():
    gen = torch.Generator(device=DEVICE).manual_seed(2)
    hidden = torch.randn(9, 16, generator=gen, device=DEVICE)
    weight = torch.randn(100, 16, generator=gen, device=DEVICE)
    labels = _labels(9, 100, -100, gen)
    with torch.no_grad():
        loss = linear_cross_entropy(hidden.requires_grad_(), weight, labels)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, linear_cross_entropy_reference(hidden, weight, labels),
                               **TOL[torch.float32])
