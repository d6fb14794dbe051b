"""engine.ops routes every op to the Triton kernels under the 'triton' backend, to the batched
CPU ops under 'cpu', and all three backends agree."""
import importlib

import pytest
import torch

from conftest import DEVICE
from engine import ops


@pytest.fixture
def restore_backend():
    yield
    ops.set_backend(None)


def test_triton_backend_resolves_every_op_to_its_kernel(restore_backend):
    x = torch.zeros(1, device=DEVICE)
    ops.set_backend("triton")
    for name, (reference, module, attr) in ops._OPS.items():
        kernel = getattr(importlib.import_module(module), attr)
        assert ops._impl(name, x) is kernel and kernel is not reference, name
    ops.set_backend("torch")
    assert all(ops._impl(name, x) is ref for name, (ref, _, _) in ops._OPS.items())
    ops.set_backend("cpu")
    for name, (reference, _, _) in ops._OPS.items():
        want = (getattr(importlib.import_module(ops._CPU_OPS[name]), name) if name in ops._CPU_OPS
                else reference)
        assert ops._impl(name, x) is want, name


def test_default_picks_by_tensor_device(restore_backend, monkeypatch):
    monkeypatch.delenv("SHEEP_OPS", raising=False)
    ops.set_backend(None)
    assert ops.backend(torch.zeros(1)) == "cpu"            # CPU tensors: the batched CPU ops
    if DEVICE == "cuda":
        assert ops.backend(torch.zeros(1, device=DEVICE)) == "triton"
    meta = torch.zeros(1, device="meta")
    assert ops.backend(meta) == "torch"
    monkeypatch.setenv("SHEEP_OPS", "triton")
    ops.set_backend(None)                                  # SHEEP_OPS is read at import / reset
    assert ops.backend(torch.zeros(1)) == "triton"         # forced: the interpreter on a CPU
    monkeypatch.setenv("SHEEP_OPS", "torch")
    ops.set_backend(None)
    assert ops.backend(torch.zeros(1)) == "torch"


def test_unknown_backend_names_the_setting(restore_backend, monkeypatch):
    monkeypatch.setenv("SHEEP_OPS", "fast")
    with pytest.raises(ValueError, match="SHEEP_OPS='fast'"):
        ops.set_backend(None)
    with pytest.raises(ValueError, match="'tritn'"):
        ops.set_backend("tritn")


def test_both_backends_agree_through_engine_ops(restore_backend):
    torch.manual_seed(0)
    n, hq, hk, d, hidden, vocab = 10, 4, 2, 16, 32, 50
    x, r = torch.randn(n, hidden, device=DEVICE), torch.randn(n, hidden, device=DEVICE)
    w = torch.rand(hidden, device=DEVICE) + 0.5
    q, k, v = (torch.randn(n, h, d, device=DEVICE) for h in (hq, hk, hk))
    positions = torch.cat([torch.arange(6), torch.arange(4)]).to(DEVICE)
    angles = torch.arange(16.0)[:, None] * (1e-4 ** (torch.arange(0, d, 2) / d))[None]
    cos_sin = torch.cat((angles.cos(), angles.sin()), -1).to(DEVICE)
    cu = torch.tensor([0, 6, 10], dtype=torch.int32, device=DEVICE)
    k_cache, v_cache = (torch.zeros(4, 4, hk, d, device=DEVICE) for _ in range(2))
    tables = torch.tensor([[2, 0], [1, 3]], dtype=torch.int32, device=DEVICE)
    context_lens = torch.tensor([5, 7], dtype=torch.int32, device=DEVICE)
    slots = torch.tensor([8, 9, 10, 11, 0, 1, -1, 4, 5, 6], device=DEVICE)
    labels = torch.randint(0, vocab, (n,), device=DEVICE)
    head = torch.randn(vocab, hidden, device=DEVICE)

    def run_all():
        kc, vc = k_cache.clone(), v_cache.clone()
        ops.store_kvcache(k, v, kc, vc, slots)
        return [ops.rms_norm(x, w, 1e-6), *ops.add_rms_norm(x, r, w, 1e-6),
                *ops.rope(q, k, positions, cos_sin), ops.swiglu(x, r),
                ops.varlen_attention(q, k, v, cu, cu, d ** -0.5), kc, vc,
                ops.paged_decode_attention(q[:2], kc, vc, tables, context_lens, 0.25),
                ops.linear_cross_entropy(x, head, labels)]

    ops.set_backend("torch")
    expected = run_all()
    for name in ("triton", "cpu"):
        ops.set_backend(name)
        got = run_all()
        for i, (a, b) in enumerate(zip(got, expected)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4,
                                       msg=lambda m: f"{name} output {i}: {m}")
