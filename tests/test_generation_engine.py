"""LLM behaviour on the tiny preset (text in, text out): seeds, n samples, stopping, context
limits, scoring tokenization, weight updates."""
import pytest
import torch

from engine import Tokenizer, load_model
from engine.generation import LLM, SamplingParams
from engine.presets import write_tiny

PROMPTS = ["Write a short poem about the sea.", "List three colors:",
           "Instruction: explain why the sky is blue.\nInput: none\nOutput:", "Hi"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def llm(tiny):
    return LLM(tiny, dtype=torch.float32, device="cpu")


def _tokens(outs):
    return [[c.token_ids for c in o.outputs] for o in outs]


def test_seeded_sampling_is_reproducible_whatever_the_batch(llm):
    sp = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=12, seed=1234, ignore_eos=True)
    alone = llm.generate([PROMPTS[0]], sp, use_tqdm=False)[0]
    others = [SamplingParams(temperature=0.8, top_k=5, max_tokens=7, seed=5, ignore_eos=True),
              SamplingParams(temperature=0.0, max_tokens=15, ignore_eos=True)]
    mixed = llm.generate([PROMPTS[2], PROMPTS[0], PROMPTS[1]], [others[0], sp, others[1]],
                         use_tqdm=False)
    assert mixed[1].token_ids == alone.token_ids and mixed[1].text == alone.text
    assert llm.generate([PROMPTS[0]], SamplingParams(**{**sp.__dict__, "seed": 99}),
                        use_tqdm=False)[0].token_ids != alone.token_ids


def test_unseeded_sampling_follows_the_engine_seed(tiny):
    sp = SamplingParams(temperature=1.0, max_tokens=10, ignore_eos=True)
    a = LLM(tiny, dtype=torch.float32, seed=3).generate(PROMPTS, sp, use_tqdm=False)
    b = LLM(tiny, dtype=torch.float32, seed=3).generate(PROMPTS, sp, use_tqdm=False)
    c = LLM(tiny, dtype=torch.float32, seed=4).generate(PROMPTS, sp, use_tqdm=False)
    assert _tokens(a) == _tokens(b) and _tokens(a) != _tokens(c)


def test_n_samples_share_prompt_blocks_and_use_seed_plus_i(llm):
    prompt = list(range(100, 140))                     # 40 tokens: 2 full blocks of 16 + 8
    sp = SamplingParams(temperature=1.0, max_tokens=6, seed=10, n=4, ignore_eos=True)
    out = llm.generate([prompt], sp, use_tqdm=False)[0]
    assert [c.index for c in out.outputs] == [0, 1, 2, 3]
    # the first sample computes the prompt; the others wait one step and reuse its 2 full
    # blocks, computing only the 8 tokens of the last, partial block
    assert llm.stats.num_computed_prompt_tokens == 40 + 3 * 8
    assert llm.stats.num_cached_prompt_tokens == 3 * 32
    for i, c in enumerate(out.outputs):
        single = llm.generate([prompt], SamplingParams(**{**sp.__dict__, "n": 1, "seed": 10 + i}),
                              use_tqdm=False)[0]
        assert c.token_ids == single.token_ids
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1


def test_stop_string_is_cut_from_text(llm, tiny):
    tok = Tokenizer.from_pretrained(tiny)
    sp = dict(temperature=1.0, max_tokens=30, ignore_eos=True, seed=7)
    free = llm.generate([PROMPTS[1]], SamplingParams(**sp), use_tqdm=False)[0]
    text = free.text
    stop = text[8:11]
    assert len(stop) == 3 and stop.strip()
    cut = text.find(stop)
    out = llm.generate([PROMPTS[1]], SamplingParams(**sp, stop=["never appears", stop]),
                       use_tqdm=False)[0]
    assert out.text == text[:cut] and out.finish_reason == "stop"
    # token ids end at the token that completed the stop string
    ids = out.token_ids
    assert ids == free.token_ids[:len(ids)]
    assert stop in tok.decode(ids) and stop not in tok.decode(ids[:-1])


def test_stop_tokens_eos_and_ignore_eos(tiny):
    model = load_model(tiny, dtype=torch.float32)
    tok = Tokenizer.from_pretrained(tiny)
    sp = dict(temperature=1.0, max_tokens=20, seed=3)      # seeded: the same draws every run
    free = LLM(model, tok).generate([PROMPTS[0]], SamplingParams(**sp, ignore_eos=True),
                                    use_tqdm=False)[0].token_ids
    t = free[5]
    first = free.index(t)
    assert first > 0
    by_stop_id = LLM(model, tok).generate(
        [PROMPTS[0]], SamplingParams(**sp, stop_token_ids=[t], ignore_eos=True), use_tqdm=False)[0]
    assert by_stop_id.token_ids == free[:first + 1] and by_stop_id.finish_reason == "stop"
    model.config.eos_token_id = [t]                     # make t an eos id of the model
    eos_llm = LLM(model, tok)
    stopped = eos_llm.generate([PROMPTS[0]], SamplingParams(**sp), use_tqdm=False)[0]
    assert stopped.token_ids == free[:first + 1] and stopped.finish_reason == "stop"
    ignored = eos_llm.generate([PROMPTS[0]], SamplingParams(**sp, ignore_eos=True), use_tqdm=False)[0]
    assert ignored.token_ids == free and ignored.finish_reason == "length"


def test_over_long_prompt_is_named_or_truncated(tiny):
    llm = LLM(tiny, dtype=torch.float32, max_model_len=32)
    long = list(range(50, 90))                          # 40 tokens
    with pytest.raises(ValueError, match=r"prompt 1 has 40 tokens; the context allows 31"):
        llm.generate([[5, 6, 7], long], SamplingParams(max_tokens=4), use_tqdm=False)
    assert not llm.scheduler.has_unfinished()
    with pytest.raises(ValueError, match="prompt 0"):
        llm.score([long], [[1, 2]])
    cut = LLM(tiny, dtype=torch.float32, max_model_len=32, truncate_prompts=True)
    sp = SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True)
    out = cut.generate([[5, 6, 7], long], sp, use_tqdm=False)
    assert out[1].prompt_token_ids == long[-31:]
    # the context is full after one new token: finish_reason "length"
    assert len(out[1].token_ids) == 1 and out[1].finish_reason == "length"
    assert out[1].token_ids == cut.generate([long[-31:]], sp, use_tqdm=False)[0].token_ids
    assert len(out[0].token_ids) == 10


def test_score_tokenizes_prompt_and_continuation_separately(llm, tiny):
    tok = Tokenizer.from_pretrained(tiny)
    prompts, conts = ["The sea is", "Colors:"], [" blue and calm.", " red"]
    scores = llm.score(prompts, conts)
    by_ids = llm.score([tok.encode(p) for p in prompts],
                       [tok.encode(c, add_special_tokens=False) for c in conts])
    for p, c, s, t in zip(prompts, conts, scores, by_ids):
        assert s.prompt_token_ids == tok.encode(p)
        assert s.continuation_token_ids == tok.encode(c, add_special_tokens=False)
        assert len(s.token_logprobs) == len(s.continuation_token_ids)
        assert s.token_logprobs == pytest.approx(t.token_logprobs, abs=1e-6)
        assert s.logprob == pytest.approx(sum(s.token_logprobs)) and s.logprob < 0
    # the score of a continuation is the sum of the greedy next-token log-probs it follows
    first = llm.next_token_logprobs([prompts[1]], top_k=700)[0]
    assert scores[1].token_logprobs[0] == pytest.approx(first[scores[1].continuation_token_ids[0]], abs=1e-5)


def test_update_weights_gives_the_new_models_outputs(tiny, tmp_path):
    other_dir = write_tiny(tmp_path / "other", seed=1)
    prompts = [PROMPTS[2], PROMPTS[2]]                  # shared prefix: cached blocks must go
    conts = [" Because of light.", " Rayleigh"]
    llm = LLM(tiny, dtype=torch.float32)
    before = [s.token_logprobs for s in llm.score(prompts, conts)]
    llm.update_weights(load_model(other_dir, dtype=torch.float32))
    after = [s.token_logprobs for s in llm.score(prompts, conts)]
    fresh = [s.token_logprobs for s in LLM(other_dir, dtype=torch.float32).score(prompts, conts)]
    for a, f, b in zip(after, fresh, before):
        assert a == pytest.approx(f, abs=1e-5)
        assert a != pytest.approx(b, abs=1e-3)


def test_in_memory_model_is_converted_as_a_copy(tiny):
    model = load_model(tiny, dtype=torch.float32)
    llm = LLM(model, Tokenizer.from_pretrained(tiny), dtype=torch.bfloat16)
    assert llm.model is not model and llm.model.dtype == torch.bfloat16
    assert model.dtype == torch.float32
    out = llm.generate(["Hello"], SamplingParams(temperature=0.0, max_tokens=5, ignore_eos=True),
                       use_tqdm=False)
    assert len(out[0].token_ids) == 5
    assert LLM(model, None).model is model


def test_bad_inputs_raise_clear_errors(llm):
    with pytest.raises(TypeError, match="list"):
        llm.generate("just one string", use_tqdm=False)
    with pytest.raises(ValueError, match="prompt 1 has token ids outside"):
        llm.generate([[1, 2], [3, 10**6]], use_tqdm=False)
    with pytest.raises(ValueError, match="2 SamplingParams for 3 prompts"):
        llm.generate(PROMPTS[:3], [SamplingParams()] * 2, use_tqdm=False)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="no tokenizer"):
        LLM(llm.model, None).generate(["text"], use_tqdm=False)


def test_a_checkpoint_without_tokenizer_warns_naming_the_file(tmp_path):
    from hf_models import write_hf_model
    write_hf_model(tmp_path, "qwen2_gqa2_tied")
    with pytest.warns(UserWarning, match="tokenizer.json not found"):
        llm = LLM(tmp_path, dtype=torch.float32)
    assert llm.tokenizer is None
