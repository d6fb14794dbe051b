"""Generation and scoring against transformers on tiny random checkpoints (fp32, CPU).

Greedy tokens must be identical to transformers' generate whatever the scheduler does:
prefix caching on or off, preemption under a tiny KV cache, chunked prefill under a tiny
token budget, one sequence at a time or all together.
"""
import pytest
import torch

from engine.generation import LLM, SamplingParams
from engine.generation.kv_cache import kv_block_bytes
from hf_models import load_hf, write_hf_model

MAX_NEW = 20


def _prompts(vocab: int) -> list[list[int]]:
    """Prompts of different lengths; three share a 33..48-token prefix (prefix-cache hits)."""
    g = torch.Generator().manual_seed(7)
    rand = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()   # noqa: E731
    shared = rand(48)
    return [rand(3), rand(17), shared[:40] + rand(5), shared + rand(9), rand(1), shared[:33],
            rand(64)]


@pytest.fixture(scope="module", params=["qwen2_gqa2_tied", "llama_mha_untied"])
def case(request, tmp_path_factory):
    """(checkpoint dir, prompts, transformers' greedy completions)."""
    d = tmp_path_factory.mktemp(request.param)
    write_hf_model(d, request.param)
    hf = load_hf(d)
    prompts = _prompts(hf.config.vocab_size)
    expected = []
    with torch.no_grad():
        for p in prompts:     # one at a time: no padding in the reference
            out = hf.generate(torch.tensor([p]), max_new_tokens=MAX_NEW, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
            expected.append(out[0, len(p):].tolist())
    return d, prompts, expected, hf


GREEDY = SamplingParams(temperature=0.0, max_tokens=MAX_NEW, ignore_eos=True)


def _llm(d, **kw) -> LLM:
    return LLM(d, dtype=torch.float32, device="cpu", **kw)


def test_greedy_matches_transformers_generate(case):
    d, prompts, expected, _ = case
    outs = _llm(d).generate(prompts, GREEDY, use_tqdm=False)
    assert [o.token_ids for o in outs] == expected
    assert all(o.finish_reason == "length" for o in outs)
    assert [o.prompt_token_ids for o in outs] == prompts


def _tiny_kv(d, blocks: int, block_size: int) -> int:
    from engine.config import ModelConfig
    return blocks * kv_block_bytes(ModelConfig.from_file(d), block_size, torch.float32)


@pytest.mark.parametrize("variant", ["no_prefix_cache", "preemption", "chunked_prefill", "batch_of_one"])
def test_greedy_tokens_do_not_depend_on_scheduling(case, variant):
    d, prompts, expected, _ = case
    if variant == "no_prefix_cache":
        llm = _llm(d, enable_prefix_caching=False)
    elif variant == "preemption":     # 24 blocks of 4: the 84-token sequence alone needs 21
        with pytest.warns(UserWarning, match="contexts are limited to 96 tokens"):
            llm = _llm(d, block_size=4, kv_cache_bytes=_tiny_kv(d, 24, 4))
    elif variant == "chunked_prefill":
        llm = _llm(d, max_num_batched_tokens=8, max_num_seqs=4)
    else:
        llm = _llm(d, max_num_seqs=1, max_num_batched_tokens=64)
    outs = llm.generate(prompts, GREEDY, use_tqdm=False)
    assert [o.token_ids for o in outs] == expected
    if variant == "preemption":
        assert llm.stats.num_preemptions > 0
    if variant == "chunked_prefill":   # 64-token prompt over >= 8 steps, decodes alongside
        assert llm.stats.num_steps > MAX_NEW + 8


def test_prefix_cache_skips_shared_prompt_tokens(case):
    d, prompts, expected, _ = case
    on = _llm(d)
    on.generate(prompts, GREEDY, use_tqdm=False)
    off = _llm(d, enable_prefix_caching=False)
    off.generate(prompts, GREEDY, use_tqdm=False)
    total = sum(map(len, prompts))
    assert off.stats.num_computed_prompt_tokens == total and off.stats.num_cached_prompt_tokens == 0
    # prompts 2, 3, 5 share 48/40/33 tokens: the 2 full 16-token blocks are computed once
    assert on.stats.num_cached_prompt_tokens == 2 * 32
    assert on.stats.num_computed_prompt_tokens == total - 2 * 32
    # a second call hits the blocks left cached by the first
    on.generate(prompts, GREEDY, use_tqdm=False)
    assert on.stats.num_cached_prompt_tokens > 2 * 32


def _hf_logprobs(hf, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0].float().log_softmax(-1)


@pytest.mark.parametrize("budget", [8192, 8])
def test_score_equals_transformers_log_softmax(case, budget):
    d, prompts, _, hf = case
    g = torch.Generator().manual_seed(3)
    conts = [torch.randint(3, hf.config.vocab_size, (n,), generator=g).tolist()
             for n in (4, 1, 11, 7, 2, 5, 3)]
    # many continuations of one prompt: the prompt's blocks are shared
    prompts = prompts + [prompts[6]] * 3
    conts = conts + [conts[0], conts[2], conts[3]]
    llm = _llm(d, max_num_batched_tokens=budget, max_num_seqs=8)
    scores = llm.score(prompts, conts)
    for p, c, s in zip(prompts, conts, scores):
        ref = _hf_logprobs(hf, p + c)
        want = [ref[len(p) - 1 + j, t].item() for j, t in enumerate(c)]
        assert s.token_logprobs == pytest.approx(want, abs=1e-4)
        assert s.logprob == pytest.approx(sum(want), abs=1e-4)
    assert llm.stats.num_cached_prompt_tokens >= 3 * 48


def test_next_token_logprobs_equal_transformers_top_k(case):
    d, prompts, _, hf = case
    got = _llm(d).next_token_logprobs(prompts, top_k=5)
    for p, g in zip(prompts, got):
        values, ids = _hf_logprobs(hf, p)[-1].topk(5)
        assert list(g) == ids.tolist()
        assert list(g.values()) == pytest.approx(values.tolist(), abs=1e-4)
