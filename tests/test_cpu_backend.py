"""The batched CPU backend (kernels/cpu_attention.py) against the torch reference ops, op by op
and through the engine (where decode also keeps K/V dense between steps): prefix caching,
preemption and chunked prefill give the same tokens, the same scheduling and the same scores
on both paths."""
import warnings

import pytest
import torch

from engine import ops
from engine.generation import LLM, SamplingParams
from engine.generation.kv_cache import kv_block_bytes
from hf_models import write_hf_model
from kernels import cpu_attention as fast
from kernels.attention import varlen_attention_reference
from kernels.kv_store import store_kvcache_reference
from kernels.paged_attention import paged_decode_attention_reference
from kernels.rope import rope_reference


def _packed(lengths, heads, d, g):
    return torch.randn(sum(lengths), heads, d, generator=g)


def _cu(lengths):
    return torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)


@pytest.mark.parametrize("lengths", [[5, 1, 17, 9], [8, 8, 8],
                                     [3, 30, 1, 12, 7, 7, 22, 5, 9, 16, 2, 11, 25, 4, 8, 13, 6, 19]])
def test_varlen_without_cache_matches_reference_with_gradients(lengths):
    g = torch.Generator().manual_seed(0)
    q, k, v = _packed(lengths, 4, 16, g), _packed(lengths, 2, 16, g), _packed(lengths, 2, 16, g)
    cu = _cu(lengths)
    grads = []
    for fn in (varlen_attention_reference, fast.varlen_attention):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves, cu, cu, 0.25)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), *[t.grad for t in leaves]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _paged(lengths_k, block_size, hk, d, g, dtype=torch.float32):
    """Caches holding each sequence's keys in shuffled blocks, and the block tables."""
    widths = [-(-n // block_size) for n in lengths_k]
    num_blocks = sum(widths) + 3
    perm = torch.randperm(num_blocks, generator=g)
    tables = torch.zeros(len(lengths_k), max(widths) + 1, dtype=torch.int32)   # a spare column
    used = 0
    for s, w in enumerate(widths):
        tables[s, :w] = perm[used:used + w]
        used += w
    k_cache = torch.randn(num_blocks, block_size, hk, d, generator=g).to(dtype)
    v_cache = torch.randn(num_blocks, block_size, hk, d, generator=g).to(dtype)
    return k_cache, v_cache, tables


def _spread_lengths(n: int, seed: int):
    """n sequences whose query and cached-key lengths spread widely (several groups)."""
    g = torch.Generator().manual_seed(seed)
    len_q = torch.randint(1, 40, (n,), generator=g).tolist()
    return len_q, [q + int(torch.randint(0, 60, (1,), generator=g)) for q in len_q]


@pytest.mark.parametrize("len_q, len_k", [([3, 1, 12, 5], [19, 1, 12, 40]), _spread_lengths(30, 5)])
def test_varlen_over_cached_prefixes_matches_reference(len_q, len_k):
    g = torch.Generator().manual_seed(1)
    k_cache, v_cache, tables = _paged(len_k, 8, 2, 16, g)
    q = _packed(len_q, 6, 16, g)
    want = varlen_attention_reference(q, k_cache, v_cache, _cu(len_q), _cu(len_k), 0.3, tables)
    got = fast.varlen_attention(q, k_cache, v_cache, _cu(len_q), _cu(len_k), 0.3, tables)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_spread_lengths_make_several_groups():
    # the second case above goes through several padded groups, not one
    assert len(fast._split(*_spread_lengths(30, 5))) > 1


def test_groups_bound_padding_and_cover_every_sequence_once():
    len_q = [1, 90, 3, 88, 2, 40, 41, 1, 5, 95]
    len_k = [60, 90, 70, 88, 65, 40, 41, 200, 9, 95]
    groups = fast._split(len_q, len_k)
    assert sorted(s for grp in groups for s in grp) == list(range(len(len_q)))
    for grp in groups:
        real = sum(len_q[s] * len_k[s] for s in grp)
        padded = len(grp) * max(len_q[s] for s in grp) * max(len_k[s] for s in grp)
        assert len(grp) == 1 or padded <= (1 + fast.GROUP_WASTE) * real + fast.GROUP_SLACK


def test_rms_norm_matches_reference():
    from kernels.rms_norm import add_rms_norm_reference, rms_norm_reference
    g = torch.Generator().manual_seed(6)
    x, r, w = (torch.randn(37, 64, generator=g) for _ in range(3))
    w = w[0]
    torch.testing.assert_close(fast.rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6),
                               atol=1e-6, rtol=1e-6)
    for a, b in zip(fast.add_rms_norm(x, r, w, 1e-6), add_rms_norm_reference(x, r, w, 1e-6)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    xb, wb = x.bfloat16(), w.bfloat16()      # other dtypes round as the reference does
    assert torch.equal(fast.rms_norm(xb, wb, 1e-6), rms_norm_reference(xb, wb, 1e-6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_paged_decode_matches_reference(dtype):
    g = torch.Generator().manual_seed(2)
    context = [1, 16, 17, 45, 9]
    k_cache, v_cache, tables = _paged(context, 16, 2, 32, g, dtype)
    q = torch.randn(len(context), 4, 32, generator=g).to(dtype)
    lens = torch.tensor(context, dtype=torch.int32)
    want = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, 0.2)
    got = fast.paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.2)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_store_and_rope_match_reference():
    g = torch.Generator().manual_seed(3)
    k, v = torch.randn(6, 2, 8, generator=g), torch.randn(6, 2, 8, generator=g)
    for slots in (torch.tensor([3, 0, 7, 12, 5, 1]), torch.tensor([3, -1, 7, -1, 5, 1])):
        caches = [torch.zeros(4, 4, 2, 8) for _ in range(4)]
        store_kvcache_reference(k, v, caches[0], caches[1], slots)
        fast.store_kvcache(k, v, caches[2], caches[3], slots)
        assert torch.equal(caches[0], caches[2]) and torch.equal(caches[1], caches[3])
    q = torch.randn(6, 4, 8, generator=g)
    positions = torch.tensor([0, 1, 2, 0, 5, 9])
    angles = torch.arange(16.0)[:, None] * (1e-2 ** (torch.arange(0, 8, 2) / 8))[None]
    cos_sin = torch.cat((angles.cos(), angles.sin()), -1)
    for a, b in zip(rope_reference(q, k, positions, cos_sin), fast.rope(q, k, positions, cos_sin)):
        assert torch.equal(a, b)


# --- the engine on both paths ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen2")
    write_hf_model(d, "qwen2_gqa2_tied")
    return d


@pytest.fixture
def restore_backend():
    yield
    ops.set_backend(None)


def _prompts():
    g = torch.Generator().manual_seed(7)
    rand = lambda n: torch.randint(3, 250, (n,), generator=g).tolist()   # noqa: E731
    shared = rand(48)
    return [rand(3), shared[:40] + rand(5), shared + rand(9), rand(1), shared[:33], rand(64)]


def _engine_kwargs(variant, d):
    if variant == "preemption":          # 24 blocks of 4: the longest sequence alone needs 21
        from engine.config import ModelConfig
        return dict(block_size=4, kv_cache_bytes=24 * kv_block_bytes(ModelConfig.from_file(d), 4,
                                                                      torch.float32))
    if variant == "chunked_prefill":
        return dict(max_num_batched_tokens=8, max_num_seqs=4)
    return {}                            # prefix caching on (the default)


def _run_both(d, variant, call):
    results = {}
    for backend in ("torch", "cpu"):
        ops.set_backend(backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the preemption setup warns about its short context
            llm = LLM(d, dtype=torch.float32, device="cpu", **_engine_kwargs(variant, d))
        out = call(llm)
        s = llm.stats
        results[backend] = (out, s.num_steps, s.num_preemptions, s.num_cached_prompt_tokens)
    return results


@pytest.mark.parametrize("variant", ["prefix_caching", "preemption", "chunked_prefill"])
def test_fast_path_generates_what_the_reference_path_generates(checkpoint, restore_backend, variant):
    prompts = _prompts()
    sp = [SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True),
          SamplingParams(temperature=0.9, top_p=0.9, max_tokens=12, ignore_eos=True, seed=5)]
    # requests ending at different steps: the decode batch shrinks step by step
    # (first: the scheduling checks below read the stats of the last call)
    sp.insert(0, [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
                  for n in (3, 14, 6, 1, 9, 12)])
    res = _run_both(checkpoint, variant, lambda llm: [
        [o.token_ids for o in llm.generate(prompts, p, use_tqdm=False)] for p in sp])
    assert res["cpu"] == res["torch"]
    _, steps, preemptions, cached = res["cpu"]
    if variant == "preemption":
        assert preemptions > 0
    if variant == "chunked_prefill":
        assert steps > 12 + 8
    if variant == "prefix_caching":
        assert cached > 0


@pytest.mark.parametrize("variant", ["prefix_caching", "chunked_prefill"])
def test_fast_path_scores_and_probes_like_the_reference_path(checkpoint, restore_backend, variant):
    prompts = _prompts()
    conts = [p[:5] + [7, 8] for p in prompts]
    res = _run_both(checkpoint, variant, lambda llm: (
        [s.token_logprobs for s in llm.score(prompts, conts)],
        llm.next_token_logprobs(prompts, top_k=4)))
    (scores_f, probes_f), *sched_f = res["cpu"]
    (scores_r, probes_r), *sched_r = res["torch"]
    assert sched_f == sched_r
    for a, b in zip(scores_f, scores_r):
        assert a == pytest.approx(b, abs=1e-5)
    assert [list(p) for p in probes_f] == [list(p) for p in probes_r]


def test_varlen_with_packed_keys_longer_than_queries_matches_reference():
    g = torch.Generator().manual_seed(4)
    len_q, len_k = [2, 7, 1], [9, 7, 4]
    q, k, v = _packed(len_q, 4, 16, g), _packed(len_k, 4, 16, g), _packed(len_k, 4, 16, g)
    want = varlen_attention_reference(q, k, v, _cu(len_q), _cu(len_k), 0.25)
    got = fast.varlen_attention(q, k, v, _cu(len_q), _cu(len_k), 0.25)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
