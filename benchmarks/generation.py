"""Generation benchmark: sheep-engine against transformers, side by side in one run.

    python3 benchmarks/generation.py --cpu               # CPU, one thread: the two CPU shapes
    python3 benchmarks/generation.py --out DIR [--quick] # GPU: nano-vllm workload, decode roofline
    python3 benchmarks/generation.py --smoke --out DIR   # every function of both modes, tiny, CPU

CPU (`--cpu`, issue 14), fp32, one thread, for the toy-world base model (1M params) and a
random Qwen2 shape of 30M params (hidden 512, 8 layers, vocab 4096):
  generate   64 prompts of 16-96 tokens, 48 greedy new tokens (ignore_eos): engine tok/s
             against transformers `generate` on the padded batch; greedy tokens compared.
  score      64 prompt+continuation pairs: engine `score` against one transformers forward
             (padded batch, log-softmax, gather).
  limit      the run's FLOPs as dense matmuls: the model's linear layers timed as plain
             matmuls at the workload's row counts, attention FLOPs at the measured rate;
             the roofline also bounds decode attention by its K/V bytes at the measured
             memory read rate. The engine's time inside the model forward is clocked too.
  profile    torch.profiler over 8 steady decode steps of the engine (top ops) into
             benchmarks/results/generation-decode-step-profile-<shape>.txt.
GPU (default when CUDA is present):
  throughput nano-vllm's workload: 256 requests, input and output lengths uniform in
             100..1024, a Qwen2.5-0.5B shape with random weights, bf16. transformers runs the
             same length distribution on fewer requests (stated in the JSON).
  decode_b1  one sequence: seconds per decode step (difference of two generation lengths)
             against the bandwidth roofline (weight + KV bytes / measured copy bandwidth).
  prefix     requests sharing one long prefix, prefix caching on and off.
`--quick` shrinks the GPU run to about 150 s on an H200. The JSON (device, versions, commit)
is rewritten into `--out DIR` (default benchmarks/results) after every case, so a run killed
at its time limit keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS_DIR, environment  # noqa: E402
from engine import ops  # noqa: E402
from engine.config import ModelConfig  # noqa: E402
from engine.generation import LLM, SamplingParams  # noqa: E402
from engine.model import CausalLM  # noqa: E402

QWEN25_05B = dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                  num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, attention_bias=True, torch_dtype="bfloat16")
QWEN2_30M = dict(QWEN25_05B, vocab_size=4096, hidden_size=512, intermediate_size=1536,
                 num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                 max_position_embeddings=1024, torch_dtype="float32")
TINY = dict(QWEN25_05B, vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            torch_dtype="float32")
WORLD_BASE = ROOT / "engine" / "world" / "data" / "base_model"


class Recorder:
    """The run's JSON, rewritten after every case so a killed run keeps what it measured."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.data = {"benchmark": "generation", "environment": environment(), **header}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write()

    def record(self, key: str, value) -> None:
        self.data[key] = value
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.path)


# --- models -------------------------------------------------------------------------------------
def build_models(shape: dict, device: torch.device, dtype: torch.dtype, with_hf: bool = True):
    """A random model as our CausalLM and as the transformers model sharing its weights."""
    import transformers
    cfg = ModelConfig.from_hf_dict(shape, source="benchmark shape")
    hf_cfg = transformers.Qwen2Config(**{k: v for k, v in shape.items()
                                        if k not in ("model_type", "torch_dtype")})
    torch.manual_seed(0)
    with torch.device(device):
        hf = transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype)
    hf.eval()
    model = _engine_model(cfg, hf.state_dict())
    return model, (hf if with_hf else None)


def load_pair(model_dir: Path, dtype: torch.dtype):
    """A checkpoint directory loaded by the engine and by transformers (same weights)."""
    import transformers
    from engine.checkpoint import load_model
    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    return load_model(model_dir, dtype=dtype, device="cpu").eval(), hf


def _engine_model(cfg: ModelConfig, hf_state: dict) -> CausalLM:
    with torch.device("meta"):
        model = CausalLM(cfg)
    ours = model.state_dict()
    state = {k: v for k, v in hf_state.items() if k in ours}
    missing = set(ours) - set(state) - ({"lm_head.weight"} if cfg.tie_word_embeddings else set())
    if missing:
        raise RuntimeError(f"transformers model lacks {sorted(missing)[:5]}")
    model.load_state_dict(state, assign=True, strict=False)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.init_rope()
    return model.eval()


def random_requests(n: int, in_range: tuple[int, int], out_range: tuple[int, int], vocab: int,
                    seed: int = 0):
    """nano-vllm's workload: token ids uniform in [0, 10000) (or the vocabulary if smaller)."""
    rng = random.Random(seed)
    top = min(10000, vocab) - 1
    prompts = [[rng.randint(3, top) for _ in range(rng.randint(*in_range))] for _ in range(n)]
    outs = [rng.randint(*out_range) for _ in range(n)]
    return prompts, outs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- engine and transformers runs ---------------------------------------------------------------
def run_engine(llm: LLM, prompts, params) -> dict:
    sync(llm.model.device)
    forward = _ForwardClock(llm.runner)
    t = time.perf_counter()
    with forward:
        outs = llm.generate(prompts, params, use_tqdm=False)
    sync(llm.model.device)
    elapsed = time.perf_counter() - t
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    s = llm.stats
    return {"requests": len(prompts), "output_tokens": tokens, "prompt_tokens": s.num_prompt_tokens,
            "computed_prompt_tokens": s.num_computed_prompt_tokens,
            "cached_prompt_tokens": s.num_cached_prompt_tokens, "steps": s.num_steps,
            "decode_steps": s.num_decode_steps, "preemptions": s.num_preemptions,
            "seconds": elapsed, "output_tokens_per_s": tokens / elapsed,
            "total_tokens_per_s": (tokens + s.num_prompt_tokens) / elapsed,
            # the model's own forward passes; the rest is scheduling, batch preparation and
            # sampling (on a GPU the clock reads launch time only: CPU figure)
            "forward_seconds": forward.seconds,
            "token_ids": [o.token_ids for o in outs]}


class _ForwardClock:
    """Wall time spent inside the runner's model forward while the context is open."""

    def __init__(self, runner):
        self.runner, self.seconds = runner, 0.0

    def __enter__(self):
        forward = self.runner.forward

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return forward(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t
        self.runner.forward = timed
        return self

    def __exit__(self, *exc):
        del self.runner.forward            # back to the class's method


def _left_padded(prompts, device):
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


def run_hf_generate(hf, prompts, max_new, device: torch.device, batch: int) -> dict:
    """transformers `generate` on left-padded batches of `batch` prompts, greedy, every prompt
    to exactly `max_new` tokens; max_new may be a list (one per prompt: the batch then
    generates to its longest and only each prompt's own length counts)."""
    import transformers
    lens = max_new if isinstance(max_new, list) else [max_new] * len(prompts)
    # no eos at all (a checkpoint's generation_config would otherwise bring its own back):
    # every row runs to its length, as the engine's ignore_eos requests do
    hf.generation_config.eos_token_id = None
    sync(device)
    t = time.perf_counter()
    tokens, token_ids = 0, []
    for i in range(0, len(prompts), batch):
        chunk, want = prompts[i:i + batch], lens[i:i + batch]
        ids, mask = _left_padded(chunk, device)
        cfg = transformers.GenerationConfig(max_new_tokens=max(want), do_sample=False,
                                            eos_token_id=None, pad_token_id=0)
        with torch.no_grad():
            out = hf.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        tokens += sum(want)
        token_ids += [row[:n] for row, n in zip(out[:, ids.shape[1]:].tolist(), want)]
    sync(device)
    elapsed = time.perf_counter() - t
    return {"method": f"generate, left-padded batches of {batch}", "requests": len(prompts),
            "transformers": transformers.__version__, "output_tokens": tokens, "seconds": elapsed,
            "output_tokens_per_s": tokens / elapsed, "token_ids": token_ids}


def score_pairs(n: int, vocab: int, seed: int = 3):
    rng = random.Random(seed)
    top = min(10000, vocab) - 1
    draw = lambda k: [rng.randint(3, top) for _ in range(k)]   # noqa: E731
    return [draw(rng.randint(16, 96)) for _ in range(n)], [draw(rng.randint(8, 48)) for _ in range(n)]


def run_engine_score(llm: LLM, prompts, conts) -> dict:
    t = time.perf_counter()
    out = llm.score(prompts, conts)
    elapsed = time.perf_counter() - t
    tokens = sum(len(p) + len(c) for p, c in zip(prompts, conts))
    return {"seconds": elapsed, "tokens_per_s": tokens / elapsed,
            "logprobs": [o.logprob for o in out]}


def run_hf_score(hf, prompts, conts) -> dict:
    """One transformers forward over the right-padded batch, log-softmax, gather."""
    seqs = [p + c for p, c in zip(prompts, conts)]
    width = max(map(len, seqs))
    t = time.perf_counter()
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        logp = hf(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        sums = []
        for row, (p, c) in enumerate(zip(prompts, conts)):
            pos = torch.arange(len(p) - 1, len(p) + len(c) - 1)
            sums.append(logp[row, pos, torch.tensor(c)].sum().item())
    elapsed = time.perf_counter() - t
    tokens = sum(map(len, seqs))
    return {"seconds": elapsed, "tokens_per_s": tokens / elapsed, "logprobs": sums}


# --- the physical limit -------------------------------------------------------------------------
def linear_shapes(cfg: ModelConfig) -> list[tuple[int, int]]:
    """(in, out) of every linear layer of one decoder layer."""
    d, hd = cfg.hidden_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    return [(d, q), (d, kv), (d, kv), (q, d), (d, cfg.intermediate_size),
            (d, cfg.intermediate_size), (cfg.intermediate_size, d)]


def _time_matmuls(rows: int, shapes: list[tuple[int, int]], repeat: int) -> float:
    """Seconds for `repeat` passes of x[rows, in] @ w[in, out] over `shapes`."""
    xs = [torch.randn(rows, i) for i, _ in shapes]
    ws = [torch.randn(i, o) for i, o in shapes]
    outs = [torch.empty(rows, o) for _, o in shapes]
    for x, w, o in zip(xs, ws, outs):
        torch.mm(x, w, out=o)
    t = time.perf_counter()
    for _ in range(repeat):
        for x, w, o in zip(xs, ws, outs):
            torch.mm(x, w, out=o)
    return time.perf_counter() - t


def _limit(cfg: ModelConfig, layer_passes: list[tuple[int, int]], head_passes: list[tuple[int, int]],
           attention_pairs: int) -> dict:
    """A workload's FLOPs run as dense matmuls at the model's own shapes: (rows, times) passes
    through every decoder layer's linears and through the LM head, timed; attention FLOPs
    (q.k and p.v: 4 * head_dim * heads per (query, visible key) pair) at the measured rate."""
    layer, head = linear_shapes(cfg), [(cfg.hidden_size, cfg.vocab_size)]
    seconds = (sum(_time_matmuls(rows, layer, times * cfg.num_hidden_layers) for rows, times in layer_passes)
               + sum(_time_matmuls(rows, head, times) for rows, times in head_passes))
    lin_flops = 2 * (cfg.num_hidden_layers * sum(i * o for i, o in layer)
                     * sum(rows * times for rows, times in layer_passes)
                     + cfg.hidden_size * cfg.vocab_size * sum(rows * times for rows, times in head_passes))
    rate = lin_flops / seconds
    attn_flops = 4 * cfg.head_dim * cfg.num_attention_heads * cfg.num_hidden_layers * attention_pairs
    return {"linear_flops": lin_flops, "attention_flops": attn_flops,
            "matmul_GFLOPs_per_s": rate / 1e9, "attention_seconds": attn_flops / rate,
            "seconds": seconds + attn_flops / rate}


def read_bandwidth() -> float:
    """Bytes/s one thread reads from memory: a sum over 256 MiB (eight times a large L3)."""
    x = torch.ones(64 * 2**20)
    x.sum()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * x.element_size() / best


def kv_read_limit(cfg: ModelConfig, prompt_lens: list[int], new_tokens: int, dtype_bytes: int,
                  bandwidth: float) -> dict:
    """The generate workload's decode steps read every cached key and value of every layer
    once (real lengths, no padding): those bytes at the measured read bandwidth. Attention's
    FLOPs are few, so on a large model's cache this, not the matmul rate, bounds it."""
    per_key = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * dtype_bytes
    keys = sum(L + j for L in prompt_lens for j in range(1, new_tokens))
    return {"decode_kv_bytes": keys * per_key, "read_GBps": bandwidth / 1e9,
            "seconds": keys * per_key / bandwidth}


def matmul_limit(cfg: ModelConfig, prompt_lens: list[int], new_tokens: int) -> dict:
    """The generate workload: one prefill over every prompt token, then `new_tokens - 1`
    decode steps of the whole batch, each with the LM head on one row per sequence."""
    b, steps = len(prompt_lens), new_tokens - 1
    pairs = sum(L * (L + 1) // 2 + sum(L + j for j in range(1, new_tokens)) for L in prompt_lens)
    return _limit(cfg, [(sum(prompt_lens), 1), (b, steps)], [(b, 1), (b, steps)], pairs)


def score_limit(cfg: ModelConfig, prompts: list[list[int]], conts: list[list[int]]) -> dict:
    """The scoring workload: every token through the layers, the LM head on each continuation
    token's row (all a scorer needs)."""
    lens = [len(p) + len(c) for p, c in zip(prompts, conts)]
    return _limit(cfg, [(sum(lens), 1)], [(sum(len(c) for c in conts), 1)],
                  sum(n * (n + 1) // 2 for n in lens))


# --- profile of one decode step -----------------------------------------------------------------
def profile_decode_step(llm: LLM, prompts, path: Path, steps: int = 8) -> dict:
    """torch.profiler over `steps` loop iterations of the steady decode phase (from the
    start of the engine's third model step, the batch's second decode step); the table is
    their sum, the header gives the wall time per step. Several steps, so that one step's
    share of a busy machine's noise does not decide the table."""
    from torch.profiler import ProfilerActivity, profile
    runner, calls = llm.runner, [0]
    prof = profile(activities=[ProfilerActivity.CPU])
    timing = {}
    execute = runner.execute

    def wrapped(*a, **kw):
        calls[0] += 1
        if calls[0] == 3:
            timing["start"] = time.perf_counter()
            prof.start()
        elif calls[0] == 3 + steps:
            prof.stop()
            timing["seconds"] = (time.perf_counter() - timing["start"]) / steps
        return execute(*a, **kw)

    runner.execute = wrapped
    try:
        llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=steps + 3,
                                             ignore_eos=True), use_tqdm=False)
    finally:
        runner.execute = execute
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    header = (f"{steps} decode steps of {len(prompts)} sequences (totals below), "
              f"{timing['seconds'] * 1e3:.2f} ms wall per step (profiler on), "
              f"ops backend {ops.backend(torch.zeros(1))}\n")
    path.write_text(header + table + "\n")
    return {"steps": steps, "seconds_per_step_profiled": timing["seconds"],
            "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)}


# --- CPU suite (issue 14) -----------------------------------------------------------------------
def cpu_case(name: str, model: CausalLM, hf, n_prompts: int, lens: tuple[int, int],
             new_tokens: int, profile_path: Path | None, repeats: int = 2) -> dict:
    cfg = model.config
    prompts, _ = random_requests(n_prompts, lens, lens, cfg.vocab_size)
    llm = LLM(model, None, max_num_seqs=max(n_prompts, 1), kv_cache_bytes=512 * 2**20)
    greedy = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    llm.generate(prompts[:4], SamplingParams(temperature=0.0, max_tokens=2), use_tqdm=False)  # warm
    # engine and transformers alternate, best of `repeats` each: a shared machine's load
    # then weighs on both sides alike
    runs: dict[str, list] = {"engine": [], "hf": [], "engine_score": [], "hf_score": []}
    sp, sc = score_pairs(n_prompts, cfg.vocab_size)
    for _ in range(repeats):
        llm.update_weights()   # clears the prefix cache: every timed run computes every prompt
        runs["engine"].append(run_engine(llm, prompts, greedy))
        runs["hf"].append(run_hf_generate(hf, prompts, new_tokens, torch.device("cpu"), batch=n_prompts))
        llm.update_weights()
        runs["engine_score"].append(run_engine_score(llm, sp, sc))
        runs["hf_score"].append(run_hf_score(hf, sp, sc))
    eng, ref, e_score, h_score = (min(runs[k], key=lambda r: r["seconds"]) for k in runs)
    same = sum(a == b for a, b in zip(eng.pop("token_ids"), ref.pop("token_ids")))
    diff = max(abs(a - b) for a, b in zip(e_score.pop("logprobs"), h_score.pop("logprobs")))
    for k in runs:
        for r in runs[k]:
            r.pop("token_ids", None), r.pop("logprobs", None)
    eng["all_seconds"], ref["all_seconds"] = [[r["seconds"] for r in runs[k]] for k in ("engine", "hf")]
    limit = min((matmul_limit(cfg, [len(p) for p in prompts], new_tokens) for _ in range(repeats)),
                key=lambda r: r["seconds"])
    s_limit = min((score_limit(cfg, sp, sc) for _ in range(repeats)), key=lambda r: r["seconds"])
    kv = kv_read_limit(cfg, [len(p) for p in prompts], new_tokens,
                       model.model.embed_tokens.weight.element_size(), read_bandwidth())
    # the limit with attention bound by whichever is slower: its FLOPs or its cache reads
    roofline = limit["seconds"] - limit["attention_seconds"] + max(limit["attention_seconds"],
                                                                   kv["seconds"])
    result = {
        "params": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
        "prompts": n_prompts, "prompt_lens": list(lens), "new_tokens": new_tokens, "repeats": repeats,
        "engine": eng, "transformers": ref, "greedy_identical_requests": same,
        "engine_over_transformers": eng["output_tokens_per_s"] / ref["output_tokens_per_s"],
        "score": {"engine": e_score, "transformers_forward": h_score, "max_abs_logprob_diff": diff,
                  "engine_over_transformers": h_score["seconds"] / e_score["seconds"],
                  "matmul_limit": s_limit,
                  "engine_seconds_over_limit": e_score["seconds"] / s_limit["seconds"],
                  # the most any engine could beat the forward by: all work at the matmul rate
                  "ceiling_over_transformers": h_score["seconds"] / s_limit["seconds"]},
        "matmul_limit": limit, "engine_seconds_over_limit": eng["seconds"] / limit["seconds"],
        # the most any engine could beat generate by: nothing but the FLOPs, at the matmul rate
        "ceiling_over_transformers": ref["seconds"] / limit["seconds"],
        # the same with the decode steps' K/V reads at the memory's read rate
        "kv_read_limit": kv, "roofline_seconds": roofline,
        "roofline_ceiling_over_transformers": ref["seconds"] / roofline,
        # what the engine would reach if scheduling, preparation and sampling took no time
        "forward_only_over_transformers": ref["seconds"] / eng["forward_seconds"]}
    if profile_path is not None:
        llm.update_weights()
        result["decode_step_profile"] = profile_decode_step(llm, prompts, profile_path, steps=2 if new_tokens < 8 else 8)
    llm.close()
    print(f"{name}: engine {eng['output_tokens_per_s']:.0f} tok/s, transformers "
          f"{ref['output_tokens_per_s']:.0f} tok/s -> {result['engine_over_transformers']:.2f}x "
          f"(ceiling {result['ceiling_over_transformers']:.2f}x, with K/V reads "
          f"{result['roofline_ceiling_over_transformers']:.2f}x; forward alone "
          f"{result['forward_only_over_transformers']:.2f}x; {same}/{n_prompts} greedy identical); "
          f"score {result['score']['engine_over_transformers']:.2f}x (ceiling "
          f"{result['score']['ceiling_over_transformers']:.2f}x; max |dlogp| {diff:.1e}); engine "
          f"{result['engine_seconds_over_limit']:.1f}x the matmul limit ({limit['seconds']:.3f} s at "
          f"{limit['matmul_GFLOPs_per_s']:.1f} GFLOP/s)")
    return result


def cpu_suite(rec: Recorder, smoke: bool) -> None:
    torch.set_num_threads(1)
    if smoke:
        cases = [("tiny", lambda: build_models(TINY, torch.device("cpu"), torch.float32), 4, (4, 12), 3, 1)]
    else:
        # best of several alternating runs: a shared machine's noise is a tenth of a run
        cases = [("world_base_1M", lambda: load_pair(WORLD_BASE, torch.float32), 64, (16, 96), 48, 7),
                 ("qwen2_30M", lambda: build_models(QWEN2_30M, torch.device("cpu"), torch.float32),
                  64, (16, 96), 48, 3)]
    for name, build, n, lens, new, reps in cases:
        model, hf = build()
        path = (Path(rec.path).parent / f"generation-decode-step-profile-{name}.txt")
        rec.record(name, cpu_case(name, model, hf, n, lens, new, path, repeats=1 if smoke else reps))


# --- GPU suite (issue 15) -----------------------------------------------------------------------
def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a large device-to-device copy (read + write)."""
    n = (256 if device.type == "cuda" else 8) * 2**20
    x = torch.empty(n, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        y.copy_(x)
    sync(device)
    return 2 * n * reps / (time.perf_counter() - t)


def decode_batch1(llm: LLM, prompt_len: int, short: int, long: int) -> dict:
    """Seconds per decode step at batch 1 and the bandwidth-roofline fraction."""
    rng, top = random.Random(1), min(10000, llm.model.config.vocab_size) - 1
    prompt = [[rng.randint(3, top) for _ in range(prompt_len)]]
    params = lambda n: SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)  # noqa: E731
    run_engine(llm, prompt, params(short))           # warm
    a = run_engine(llm, prompt, params(short))["seconds"]
    b = run_engine(llm, prompt, params(long))["seconds"]
    step = max(b - a, 1e-9) / (long - short)
    model, cfg = llm.model, llm.model.config
    weight_bytes = sum(p.numel() * p.element_size()
                       for p in {p.data_ptr(): p for p in model.parameters()}.values())
    avg_context = prompt_len + (short + long) / 2
    kv_bytes = avg_context * 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim \
        * model.model.embed_tokens.weight.element_size()
    bw = copy_bandwidth(model.device)
    roofline = (weight_bytes + kv_bytes) / bw
    return {"prompt_len": prompt_len, "seconds_per_step": step, "tokens_per_s": 1 / step,
            "weight_bytes": weight_bytes, "kv_bytes_per_step": kv_bytes,
            "copy_bandwidth_GBps": bw / 1e9, "roofline_seconds": roofline,
            "roofline_fraction": roofline / step}


def prefix_sharing(model, n: int, prefix_len: int, suffix_len: int, max_tokens: int,
                   caching: bool, engine_kw: dict) -> dict:
    rng, top = random.Random(2), min(10000, model.config.vocab_size) - 1
    prefix = [rng.randint(3, top) for _ in range(prefix_len)]
    prompts = [prefix + [rng.randint(3, top) for _ in range(suffix_len)] for _ in range(n)]
    llm = LLM(model, None, enable_prefix_caching=caching, **engine_kw)
    try:
        res = run_engine(llm, prompts, SamplingParams(temperature=0.6, max_tokens=max_tokens,
                                                      ignore_eos=True, seed=0))
    finally:
        llm.close()
    res.pop("token_ids")
    res["prefix_caching"] = caching
    return res


# sizes per mode: (requests, hf requests, length range), decode_b1 (prompt, short, long),
# prefix (n, prefix_len, suffix_len, out)
GPU_SIZES = {
    "full": dict(requests=256, hf_requests=64, lens=(100, 1024), b1=(512, 32, 288),
                 prefix=(1024, 1024, 32, 64)),
    "quick": dict(requests=256, hf_requests=16, lens=(100, 1024), b1=(512, 16, 144),
                  prefix=(256, 1024, 32, 32)),
    "smoke": dict(requests=6, hf_requests=3, lens=(8, 24), b1=(16, 2, 6), prefix=(6, 32, 4, 3)),
}


def gpu_suite(rec: Recorder, mode: str, args) -> None:
    sizes = GPU_SIZES[mode]
    cuda = mode != "smoke"
    device = torch.device("cuda" if cuda else "cpu")
    shape, dtype = (QWEN25_05B, torch.bfloat16) if cuda else (TINY, torch.float32)
    if cuda:
        engine_kw = dict(gpu_memory_utilization=args.gpu_memory_utilization,
                         enforce_eager=args.enforce_eager, max_num_seqs=256,
                         max_num_batched_tokens=16384)
    else:
        engine_kw = dict(kv_cache_bytes=4 * 2**20, max_num_seqs=8, max_num_batched_tokens=128)
    model, hf = build_models(shape, device, dtype, with_hf=not args.no_hf)
    rec.record("model_shape", shape)
    rec.record("engine_settings", engine_kw)
    prompts, out_lens = random_requests(sizes["requests"], sizes["lens"], sizes["lens"],
                                        shape["vocab_size"])
    llm = LLM(model, None, **engine_kw)
    rec.record("kv_cache_blocks", llm.scheduler.block_manager.num_blocks)
    rec.record("cuda_graphs", llm.runner.graphs is not None)
    llm.generate(prompts[:4], SamplingParams(temperature=0.6, max_tokens=4, ignore_eos=True),
                 use_tqdm=False)
    llm.update_weights()         # clears the prefix cache: no run reuses another's prompts
    params = [SamplingParams(temperature=0.6, max_tokens=n, ignore_eos=True, seed=i)
              for i, n in enumerate(out_lens)]
    thr = run_engine(llm, prompts, params)
    thr.pop("token_ids")
    rec.record("throughput", thr)
    print(f"throughput: {thr['output_tokens_per_s']:.0f} output tok/s "
          f"({thr['output_tokens']} tokens in {thr['seconds']:.1f} s)")

    b1 = decode_batch1(llm, *sizes["b1"])
    rec.record("decode_b1", b1)
    print(f"decode batch 1: {b1['seconds_per_step'] * 1e3:.2f} ms/step, "
          f"{b1['roofline_fraction'] * 100:.0f}% of the bandwidth roofline "
          f"({b1['copy_bandwidth_GBps']:.0f} GB/s copy)")
    llm.close()
    del llm

    if hf is not None:
        # transformers on the first hf_requests requests: the same length distribution
        k = sizes["hf_requests"]
        ref = run_hf_generate(hf, prompts[:k], out_lens[:k], device, batch=min(k, 16))
        ref.pop("token_ids")
        ref["note"] = (f"the first {k} of the {len(prompts)} requests (same length distribution); "
                       "greedy, padded batches generate to their longest output")
        vs = {"engine_output_tokens_per_s": thr["output_tokens_per_s"], "transformers": ref,
              "engine_over_transformers": thr["output_tokens_per_s"] / ref["output_tokens_per_s"]}
        rec.record("vs_transformers", vs)
        print(f"vs transformers: {vs['engine_over_transformers']:.2f}x "
              f"({ref['output_tokens_per_s']:.0f} tok/s on {k} requests)")

    n, plen, slen, olen = sizes["prefix"]
    prefix = []
    for caching in (True, False):
        prefix.append(prefix_sharing(model, n, plen, slen, olen, caching, engine_kw))
        rec.record("prefix", prefix)
        r = prefix[-1]
        print(f"prefix sharing ({n} x {plen}+{slen}, caching {caching}): {r['seconds']:.1f} s, "
              f"{r['cached_prompt_tokens']} prompt tokens from cache")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="the CPU suite (issue 14), one thread")
    p.add_argument("--quick", action="store_true", help="GPU: the ~150 s version")
    p.add_argument("--smoke", action="store_true",
                   help="both suites' code paths on tiny CPU shapes, in seconds (the test suite)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON")
    p.add_argument("--no-hf", action="store_true", help="GPU: skip the transformers baseline")
    p.add_argument("--enforce-eager", action="store_true", help="GPU: no CUDA graphs")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    args = p.parse_args(argv)
    if args.smoke:
        rec = Recorder(args.out / "generation-smoke.json", {"mode": "smoke"})
        cpu_suite(rec, smoke=True)
        gpu_suite(rec, "smoke", args)
    elif args.cpu or not torch.cuda.is_available():
        rec = Recorder(args.out / "generation-cpu.json", {"mode": "cpu", "threads": 1})
        cpu_suite(rec, smoke=False)
    else:
        slug = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
        mode = "quick" if args.quick else "full"
        rec = Recorder(args.out / f"generation-{slug}.json", {"mode": mode})
        gpu_suite(rec, mode, args)
    print(f"wrote {rec.path}")
    return rec.path


if __name__ == "__main__":
    main()
