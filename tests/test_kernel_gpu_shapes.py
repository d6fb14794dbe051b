"""GPU only: the compiled Triton kernels against their references at the engine's real sizes,
where the launchers pick their GPU tiles (128-row attention tiles, 8192-wide vocab blocks,
decode split over many programs) that the interpreter's tiny tiles never exercise; and the
compiled attention kernels spill no registers (what benchmarks/aot_compile.py predicts).

Errors are relative norms ||ours - ref|| / ||ref|| against an fp32 reference, bounded by three
times the error of torch's own low-precision computation of the same thing, or by the dtype's
floor (bf16 operands land between 1e-3 and 1e-2), whichever is larger: the bound follows the
dtype's rounding (FlashAttention also rounds P and dS to it) instead of a guessed tolerance."""
import pytest
import torch

from conftest import DEVICE
from kernels import attention
from kernels.attention import _KERNELS, varlen_attention, varlen_attention_reference
from kernels.kv_store import store_kvcache, store_kvcache_reference
from kernels.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_reference
from kernels.paged_attention import paged_decode_attention, paged_decode_attention_reference
from kernels.rms_norm import add_rms_norm, add_rms_norm_reference, rms_norm, rms_norm_reference
from kernels.rope import rope, rope_reference
from kernels.swiglu import swiglu, swiglu_reference

pytestmark = pytest.mark.skipif(DEVICE != "cuda", reason="compiled kernels need a CUDA GPU")

HALF = [torch.bfloat16, torch.float16]
PAGE = 16                                 # the engine's KV block size
HEADS = {64: (14, 2), 128: (28, 4), 256: (8, 4)}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


FLOOR = {torch.bfloat16: 1e-2, torch.float16: 2e-3, torch.float32: 1e-5}


def assert_as_accurate_as_torch(ours, torch_lowp, ref32, what: str):
    """ours and torch's low-precision result, each against the fp32 reference."""
    bound = max(3 * rel_err(torch_lowp, ref32), FLOOR[ours.dtype])
    err = rel_err(ours, ref32)
    assert err <= bound, f"{what}: relative error {err:.2e} > {bound:.2e}"


def _cu(lengths):
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths).cumsum(0)
    return cu.to(DEVICE)


def _attention_all(q, k, v, cu_q, cu_k, grad, fn):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, cu_q, cu_k, q.shape[-1] ** -0.5)
    out.backward(grad)
    return [out] + [t.grad for t in leaves]


# every head-dim class in bf16, fp16 at the models' d128 (each pair autotunes ~9 compiles)
DTYPE_DIMS = [(torch.bfloat16, 64), (torch.bfloat16, 128), (torch.bfloat16, 256),
              (torch.float16, 128)]


@pytest.mark.parametrize("dtype,head_dim", DTYPE_DIMS)
@pytest.mark.parametrize("lengths", [[1, 130, 700, 257], [3] * 40 + [517]])
def test_varlen_attention_forward_and_grads_at_real_tiles(dtype, head_dim, lengths):
    torch.manual_seed(0)
    hq, hk = HEADS[head_dim]
    n = sum(lengths)
    q, k, v = (torch.randn(n, h, head_dim, device=DEVICE) for h in (hq, hk, hk))
    grad = torch.randn(n, hq, head_dim, device=DEVICE)
    cu = _cu(lengths)
    ref32 = _attention_all(q, k, v, cu, cu, grad, varlen_attention_reference)
    lowp = [t.to(dtype) for t in (q, k, v, grad)]
    torch_lowp = _attention_all(*lowp[:3], cu, cu, lowp[3], varlen_attention_reference)
    ours = _attention_all(*lowp[:3], cu, cu, lowp[3], varlen_attention)
    for name, a, b, r in zip(("out", "dq", "dk", "dv"), ours, torch_lowp, ref32):
        assert a.dtype == dtype
        assert_as_accurate_as_torch(a, b, r, f"{name} d{head_dim} {dtype}")


@pytest.mark.parametrize("dtype,head_dim", DTYPE_DIMS)
def test_paged_prefill_over_a_long_cached_prefix(dtype, head_dim):
    torch.manual_seed(1)
    hq, hk = HEADS[head_dim]
    len_q, len_k = [200, 1, 67], [1000, 33, 67]
    caches, tables = _paged(len_k, hk, head_dim, torch.float32)
    q = torch.randn(sum(len_q), hq, head_dim, device=DEVICE)
    cu_q, cu_k = _cu(len_q), _cu(len_k)
    scale = head_dim ** -0.5
    ref32 = varlen_attention_reference(q, *caches, cu_q, cu_k, scale, tables)
    lowp = [t.to(dtype) for t in (q, *caches)]
    torch_lowp = varlen_attention_reference(*lowp, cu_q, cu_k, scale, tables)
    ours = varlen_attention(*lowp, cu_q, cu_k, scale, tables)
    assert_as_accurate_as_torch(ours, torch_lowp, ref32, f"paged prefill d{head_dim}")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("batch", [1, 3, 96])
def test_paged_decode_split_over_the_whole_gpu(dtype, head_dim, batch):
    torch.manual_seed(2)
    hq, hk = HEADS[head_dim]
    contexts = ([4000, 1, 700] * batch)[:batch]
    capacity = 4096 // PAGE                        # the block table of a 4k context
    num_pages = batch * capacity + 1
    caches = [torch.randn(num_pages, PAGE, hk, head_dim, device=DEVICE) for _ in "kv"]
    tables = (torch.randperm(num_pages - 1, device=DEVICE)[:batch * capacity] + 1) \
        .to(torch.int32).view(batch, capacity)
    lens = torch.tensor(contexts, dtype=torch.int32, device=DEVICE)
    q = torch.randn(batch, hq, head_dim, device=DEVICE)
    scale = head_dim ** -0.5
    ref32 = paged_decode_attention_reference(q, *caches, tables, lens, scale)
    lowp = [t.to(dtype) for t in (q, *caches)]
    torch_lowp = paged_decode_attention_reference(*lowp, tables, lens, scale)
    ours = paged_decode_attention(*lowp, tables, lens, scale)
    assert_as_accurate_as_torch(ours, torch_lowp, ref32, f"decode b{batch} d{head_dim}")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("hidden", [896, 3584])
def test_norms_at_model_widths(dtype, hidden):
    torch.manual_seed(3)
    x, r, gy, gs = (torch.randn(1037, hidden, device=DEVICE) for _ in range(4))
    w = 1 + 0.1 * torch.randn(hidden, device=DEVICE)

    def run(fn, dt):
        leaves = [t.to(dt).clone().requires_grad_() for t in (x, r, w)]
        y, s = fn(*leaves, 1e-6)
        (y.float() * gy + s.float() * gs).sum().backward()
        y_plain = (rms_norm if fn is add_rms_norm else rms_norm_reference)(leaves[0], leaves[2],
                                                                           1e-6)
        return [y, s, y_plain] + [t.grad for t in leaves]
    ref32, torch_lowp = run(add_rms_norm_reference, torch.float32), run(add_rms_norm_reference,
                                                                        dtype)
    ours = run(add_rms_norm, dtype)
    for name, a, b, c in zip(("y", "sum", "rms_norm", "dx", "dr", "dw"), ours, torch_lowp,
                             ref32):
        assert_as_accurate_as_torch(a, b, c, f"{name} hidden {hidden}")


@pytest.mark.parametrize("dtype", HALF)
def test_swiglu_and_rope_at_7b_shapes(dtype):
    torch.manual_seed(4)
    n, inter, (hq, hk), d = 515, 18944, HEADS[128], 128
    gate_up = 3 * torch.randn(n, 2 * inter, device=DEVICE)
    grad = torch.randn(n, inter, device=DEVICE)
    qkv = torch.randn(n, (hq + 2 * hk) * d, device=DEVICE)
    positions = torch.randint(0, 32768, (n,), device=DEVICE)
    inv_freq = 1e6 ** -(torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.arange(32768, dtype=torch.float32)[:, None] * inv_freq
    cos_sin = torch.cat((angles.cos(), angles.sin()), -1).to(DEVICE)
    gq, gk = torch.randn(n, hq, d, device=DEVICE), torch.randn(n, hk, d, device=DEVICE)

    def run(swiglu_fn, rope_fn, dt):
        gu = gate_up.to(dt)
        gate = gu[:, :inter].detach().requires_grad_()
        up = gu[:, inter:].detach().requires_grad_()
        out = swiglu_fn(gate, up)
        out.backward(grad.to(dt))
        x = qkv.to(dt)
        q = x[:, :hq * d].view(n, hq, d).detach().requires_grad_()
        k = x[:, hq * d:(hq + hk) * d].view(n, hk, d).detach().requires_grad_()
        qo, ko = rope_fn(q, k, positions, cos_sin)
        torch.autograd.backward((qo, ko), (gq.to(dt), gk.to(dt)))
        return [out, gate.grad, up.grad, qo, ko, q.grad, k.grad]
    ref32 = run(swiglu_reference, rope_reference, torch.float32)
    torch_lowp = run(swiglu_reference, rope_reference, dtype)
    ours = run(swiglu, rope, dtype)
    for name, a, b, c in zip(("silu*up", "dgate", "dup", "q", "k", "dq", "dk"), ours,
                             torch_lowp, ref32):
        assert_as_accurate_as_torch(a, b, c, name)


def test_store_kvcache_at_7b_shapes_is_exact():
    torch.manual_seed(5)
    n, (hq, hk), d = 777, HEADS[128], 128
    qkv = torch.randn(n, (hq + 2 * hk) * d, device=DEVICE, dtype=torch.bfloat16)
    k = qkv[:, hq * d:(hq + hk) * d].view(n, hk, d)
    v = qkv[:, (hq + hk) * d:].view(n, hk, d)
    blocks = 2 * -(-n // PAGE)
    slots = torch.randperm(blocks * PAGE, device=DEVICE)[:n]
    slots[::7] = -1                                   # padding rows store nothing
    ours = [torch.randn(blocks, PAGE, hk, d, device=DEVICE, dtype=torch.bfloat16) for _ in "kv"]
    ref = [c.clone() for c in ours]
    store_kvcache(k, v, *ours, slots)
    store_kvcache_reference(k, v, *ref, slots)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_linear_cross_entropy_over_a_real_vocab_in_chunks(dtype):
    torch.manual_seed(6)
    n, d, vocab = 300, 896, 151936
    hidden = torch.randn(n, d, device=DEVICE)
    weight = 0.02 * torch.randn(vocab, d, device=DEVICE)
    labels = torch.randint(0, vocab, (n,), device=DEVICE)
    labels[::3] = -100

    def run(fn, dt, **kw):
        h, w = (t.to(dt).clone().requires_grad_() for t in (hidden, weight))
        loss = fn(h, w, labels, -100, "mean", **kw)
        loss.backward()
        return [loss, h.grad, w.grad]
    ref32 = run(linear_cross_entropy_reference, torch.float32)
    torch_lowp = run(linear_cross_entropy_reference, dtype)
    ours = run(linear_cross_entropy, dtype, chunk_tokens=128)     # 3 chunks, 19 vocab blocks
    for name, a, b, c in zip(("loss", "dhidden", "dweight"), ours, torch_lowp, ref32):
        assert_as_accurate_as_torch(a, b, c, f"{name} {dtype}")


def _paged(lengths, hk, head_dim, dtype):
    """Caches holding each sequence's keys on randomly ordered pages, and the block tables."""
    pages = [-(-n // PAGE) for n in lengths]
    num_pages = sum(pages) + 1
    caches = [torch.randn(num_pages, PAGE, hk, head_dim, device=DEVICE, dtype=dtype)
              for _ in "kv"]
    order = (torch.randperm(num_pages - 1, device=DEVICE) + 1).to(torch.int32)
    tables = torch.zeros(len(lengths), max(pages), dtype=torch.int32, device=DEVICE)
    used = 0
    for i, p in enumerate(pages):
        tables[i, :p] = order[used:used + p]
        used += p
    return caches, tables


def test_compiled_attention_kernels_spill_no_registers():
    """Run attention (fwd, bwd, paged) at DTYPE_DIMS in both SEQ_BLOCK regimes (32 and 256
    sequences; the first run autotunes, so every tile candidate is compiled and launched);
    then read the registers and spills of every kernel the GPU loaded."""
    torch.manual_seed(7)
    attention._tuned.cache_clear()      # fresh autotuners: every candidate is launched here
    for dtype, head_dim in DTYPE_DIMS:
        hq, hk = HEADS[head_dim]
        for lengths in ([5, 17, 3], [2] * 200):
            n = sum(lengths)
            q, k, v = (torch.randn(n, h, head_dim, device=DEVICE, dtype=dtype, requires_grad=True)
                       for h in (hq, hk, hk))
            cu = _cu(lengths)
            varlen_attention(q, k, v, cu, cu, 0.1).sum().backward()
            caches, tables = _paged(lengths, hk, head_dim, dtype)
            varlen_attention(q.detach(), *caches, cu, cu, 0.1, tables)
    loaded = []
    for kernel in _KERNELS.values():
        for cache in kernel.device_caches.values():
            loaded += [c for c in cache[0].values() if hasattr(c, "n_spills")
                       and c.src.signature.get("Q") in ("*bf16", "*fp16")]
    assert len(loaded) >= 20, f"only {len(loaded)} compiled half-precision attention kernels"
    spilling = [(c.name, c.n_regs, c.n_spills, c.metadata.num_warps, c.metadata.num_stages)
                for c in loaded if c.n_spills]
    assert not spilling, f"spilling kernels (name, regs, spills, warps, stages): {spilling}"
