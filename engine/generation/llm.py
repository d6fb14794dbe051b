"""LLM: the public face of generation and scoring, and the one step loop under both.

    llm = LLM("path/to/hf_dir")                      # or LLM(model, tokenizer)
    outs = llm.generate(prompts, SamplingParams(temperature=1.0, top_p=0.95, max_tokens=1000))
    scores = llm.score(prompts, continuations)       # summed continuation log-probs

Every call tokenizes and checks all prompts first (a prompt that does not fit the context
raises naming its index, or is cut to its last tokens with truncate_prompts=True), then turns
each request into sequences and runs the step loop: schedule -> model step -> sample ->
stop checks, until every sequence has finished.

Weights: `update_weights(model_or_state_dict)` copies new weights into the engine's model in
place, keeping the KV cache and CUDA graphs and clearing the prefix cache; that is the cheap
way to follow a training loop. Building a new LLM instead works too: call `close()` on the old
one (or drop it) first so its KV cache is freed before the new one sizes its own.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from time import perf_counter

import torch
from tqdm.auto import tqdm

from engine.generation import distributed
from engine.generation.block_manager import BlockManager
from engine.generation.kv_cache import DEFAULT_CPU_KV_BYTES, cuda_num_blocks, kv_block_bytes
from engine.generation.model_runner import ModelRunner
from engine.generation.outputs import CompletionOutput, GenerationStats, RequestOutput, ScoreOutput
from engine.generation.sampling_params import SamplingParams
from engine.generation.scheduler import Scheduler
from engine.generation.sequence import Sequence
from engine.generation.stopping import check_stop, completion_text
from engine.dtypes import dtype_of
from engine.settings import check, setting
from engine.model import CausalLM


@dataclass
class EngineConfig:
    """The engine's settings (engine.settings): checked when an LLM is built."""
    block_size: int = setting(16, "tokens per KV-cache block", ge=1)
    max_num_seqs: int = setting(256, "sequences per step", ge=1)
    max_num_batched_tokens: int = setting(8192, "tokens per step", ge=1)
    max_model_len: int | None = setting(None, "context limit (None: the model's)", ge=2)
    kv_cache_bytes: int | None = setting(None, "KV budget; CPU default 64 MiB, on CUDA it "
                                         "overrides profiling", ge=1)
    gpu_memory_utilization: float = setting(0.9, "share of GPU memory for weights + KV cache",
                                            gt=0, le=1)
    enable_prefix_caching: bool = setting(True, "reuse the blocks of a shared prompt prefix")
    enforce_eager: bool = setting(False, "no CUDA graphs")
    truncate_prompts: bool = setting(False, "keep the last tokens of an over-long prompt")
    data_parallel: bool = setting(False, "shard requests over the process group; then every "
                                  "rank must make the same calls")
    seed: int = setting(0, "seed of requests that bring none")


class LLM:
    def __init__(self, model: str | os.PathLike | CausalLM, tokenizer=None, *,
                 dtype: torch.dtype | str | None = None, device: str | torch.device | None = None,
                 block_size: int = 16, max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                 max_model_len: int | None = None, kv_cache_bytes: int | None = None,
                 gpu_memory_utilization: float = 0.9, enable_prefix_caching: bool = True,
                 enforce_eager: bool = False, truncate_prompts: bool = False,
                 data_parallel: bool = False, seed: int = 0):
        self.cfg = EngineConfig(block_size, max_num_seqs, max_num_batched_tokens, max_model_len,
                                kv_cache_bytes, gpu_memory_utilization, enable_prefix_caching,
                                enforce_eager, truncate_prompts, data_parallel, seed)
        check(self.cfg, {f.name: "LLM(...)" for f in fields(EngineConfig)})
        self.model, self.tokenizer = _resolve_model(model, tokenizer, dtype, device)
        mcfg = self.model.config
        eos = set(mcfg.eos_token_id) | set(self.tokenizer.eos_token_ids if self.tokenizer else [])
        self.eos_token_ids = frozenset(eos)
        context = min(max_model_len or mcfg.max_position_embeddings, mcfg.max_position_embeddings)
        num_blocks = self._num_kv_blocks(context)
        self.max_model_len = min(context, num_blocks * block_size)
        if self.max_model_len < context:
            warnings.warn(f"the KV cache holds {num_blocks} blocks of {block_size} tokens: contexts "
                          f"are limited to {self.max_model_len} tokens (model allows {context})")
        self.scheduler = Scheduler(BlockManager(num_blocks, block_size, enable_prefix_caching),
                                   min(max_num_seqs, max_num_batched_tokens), max_num_batched_tokens)
        self.runner = ModelRunner(self.model, num_blocks, block_size, self.max_model_len,
                                  self.scheduler.max_num_seqs, use_cuda_graphs=not enforce_eager,
                                  max_num_batched_tokens=max_num_batched_tokens)
        self.stats = GenerationStats()
        self._calls = 0

    def _num_kv_blocks(self, context: int) -> int:
        cfg, model = self.cfg, self.model
        block_bytes = kv_block_bytes(model.config, cfg.block_size, model.dtype)
        if cfg.kv_cache_bytes is not None or model.device.type != "cuda":
            budget = cfg.kv_cache_bytes if cfg.kv_cache_bytes is not None else DEFAULT_CPU_KV_BYTES
            num_blocks = budget // block_bytes
            where = f"kv_cache_bytes={budget}"
        else:
            num_blocks = cuda_num_blocks(model, block_bytes, cfg.gpu_memory_utilization,
                                         cfg.max_num_batched_tokens, context, cfg.max_num_seqs)
            where = f"gpu_memory_utilization={cfg.gpu_memory_utilization}"
        if num_blocks < 2:
            raise ValueError(f"KV cache too small: {where} holds {max(num_blocks, 0)} block(s) of "
                             f"{block_bytes} bytes ({cfg.block_size} tokens); give it more memory")
        return int(num_blocks)

    # --- public API -----------------------------------------------------------------------
    def generate(self, prompts: list[str] | list[list[int]],
                 sampling_params: SamplingParams | list[SamplingParams] | None = None,
                 use_tqdm: bool = True) -> list[RequestOutput]:
        """Complete every prompt (text or token ids); results in input order, n per request."""
        prompts = _as_list(prompts, "prompts")
        params = _broadcast_params(sampling_params, len(prompts))
        if self.tokenizer is None and any(sp.stop for sp in params):
            raise ValueError("stop strings need a tokenizer; this LLM has none (use stop_token_ids)")
        ids = [self._prepare_prompt(i, p, self.max_model_len - 1) for i, p in enumerate(prompts)]
        call = self._next_call()
        rank, world = self._rank_world()
        local = distributed.shard(len(prompts), rank, world)
        seqs = []
        for r in local:
            sp = params[r]
            base = sp.seed if sp.seed is not None else _derived_seed(self.cfg.seed, call, r)
            eos = frozenset(sp.stop_token_ids) | (frozenset() if sp.ignore_eos else self.eos_token_ids)
            for j in range(sp.n):
                seqs.append(Sequence(ids[r], sp, request_index=r, sample_index=j, seed=base + j,
                                     eos_token_ids=eos))
        self._run(seqs, len(local), use_tqdm and rank == 0, "generate")
        by_request: dict[int, list[Sequence]] = {}
        for s in seqs:
            by_request.setdefault(s.request_index, []).append(s)
        results = []
        for r in local:
            outs = [CompletionOutput(s.sample_index, completion_text(s, self.tokenizer),
                                     s.completion_token_ids, s.finish_reason)
                    for s in sorted(by_request[r], key=lambda s: s.sample_index)]
            text = prompts[r] if isinstance(prompts[r], str) else None
            results.append(RequestOutput(r, text, ids[r], outs))
        return distributed.gather_in_order(local, results, len(prompts), world)

    def score(self, prompts: list[str] | list[list[int]], continuations: list[str] | list[list[int]],
              use_tqdm: bool = False) -> list[ScoreOutput]:
        """Log-probs of each continuation given its prompt, in one prefill pass (no sampling).

        Tokenization: ids = encode(prompt) + encode(continuation, add_special_tokens=False),
        so the prompt gets BOS (if the tokenizer adds one) and the continuation is tokenized on
        its own: a continuation that would merge with the prompt's last characters into one
        token is scored as its separate tokens. Token-id lists are used as given.
        """
        prompts = _as_list(prompts, "prompts")
        continuations = _as_list(continuations, "continuations")
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuations")
        pairs = [self._prepare_pair(i, p, c) for i, (p, c) in enumerate(zip(prompts, continuations))]
        greedy = SamplingParams(temperature=0.0)
        rank, world = self._rank_world()
        local = distributed.shard(len(prompts), rank, world)
        seqs = {r: Sequence(pairs[r][0] + pairs[r][1], greedy, request_index=r, max_tokens=0,
                            logprob_start=len(pairs[r][0]) - 1) for r in local if pairs[r][1]}
        self._next_call()
        self._run(list(seqs.values()), len(seqs), use_tqdm and rank == 0, "score")
        results = []
        for r in local:
            lps = seqs[r].prompt_logprobs if r in seqs else []
            results.append(ScoreOutput(float(sum(lps)), lps, pairs[r][0], pairs[r][1]))
        return distributed.gather_in_order(local, results, len(prompts), world)

    def next_token_logprobs(self, prompts: list[str] | list[list[int]], top_k: int = 20,
                            use_tqdm: bool = False) -> list[dict[int, float]]:
        """For each prompt, {token id: log-prob} of the top_k most likely next tokens."""
        if top_k < 1:
            raise ValueError(f"next_token_logprobs: top_k must be >= 1, got {top_k}")
        prompts = _as_list(prompts, "prompts")
        ids = [self._prepare_prompt(i, p, self.max_model_len) for i, p in enumerate(prompts)]
        greedy = SamplingParams(temperature=0.0)
        rank, world = self._rank_world()
        local = distributed.shard(len(prompts), rank, world)
        seqs = [Sequence(ids[r], greedy, request_index=r, max_tokens=0, top_logprobs=top_k)
                for r in local]
        self._next_call()
        self._run(seqs, len(seqs), use_tqdm and rank == 0, "next-token")
        return distributed.gather_in_order(local, [s.next_token_logprobs for s in seqs],
                                           len(prompts), world)

    @torch.no_grad()
    def update_weights(self, new: CausalLM | dict[str, torch.Tensor] | None = None) -> None:
        """Copy new weights (a CausalLM of the same shape, or its state dict) into the engine's
        model in place and clear the prefix cache. With no argument only the cache is cleared
        (for callers that changed the engine's model parameters themselves)."""
        if new is not None and new is not self.model:
            state = new.state_dict() if isinstance(new, torch.nn.Module) else new
            result = self.model.load_state_dict(state, strict=False)
            missing = [k for k in result.missing_keys
                       if not (k == "lm_head.weight" and self.model.config.tie_word_embeddings)]
            if missing or result.unexpected_keys:
                raise ValueError(f"update_weights: missing {missing[:5]}, unexpected "
                                 f"{result.unexpected_keys[:5]}")
        self.scheduler.block_manager.reset_prefix_cache()

    def close(self) -> None:
        """Free the KV cache and CUDA graphs now (the LLM is unusable afterwards)."""
        self.runner.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- inputs ---------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        return distributed.rank_and_world() if self.cfg.data_parallel else (0, 1)

    def _next_call(self) -> int:
        self._calls += 1
        return self._calls

    def _encode(self, i: int, item, what: str, special: bool = True) -> list[int]:
        if isinstance(item, str):
            if self.tokenizer is None:
                raise ValueError(f"{what} {i} is text but this LLM has no tokenizer; pass token "
                                 "ids or a tokenizer")
            return self.tokenizer.encode(item, add_special_tokens=special)
        ids = list(item)
        vocab = self.model.config.vocab_size
        if any(not isinstance(t, int) or not 0 <= t < vocab for t in ids):
            raise ValueError(f"{what} {i} has token ids outside the vocabulary [0, {vocab})")
        return ids

    def _prepare_prompt(self, i: int, prompt, limit: int) -> list[int]:
        ids = self._encode(i, prompt, "prompt")
        if not ids:
            raise ValueError(f"prompt {i} is empty (no tokens to condition on)")
        if len(ids) > limit:
            if not self.cfg.truncate_prompts:
                raise ValueError(f"prompt {i} has {len(ids)} tokens; the context allows {limit} "
                                 f"(max_model_len {self.max_model_len}); shorten it or pass "
                                 "truncate_prompts=True to keep its last tokens")
            ids = ids[-limit:]
        return ids

    def _prepare_pair(self, i: int, prompt, continuation) -> tuple[list[int], list[int]]:
        p = self._encode(i, prompt, "prompt")
        c = self._encode(i, continuation, "continuation", special=False)
        if not p:
            raise ValueError(f"prompt {i} is empty: the first continuation token has no context")
        if len(p) + len(c) > self.max_model_len:
            if not self.cfg.truncate_prompts or len(c) >= self.max_model_len:
                raise ValueError(f"prompt {i} + continuation have {len(p) + len(c)} tokens; the "
                                 f"context allows {self.max_model_len}")
            p = p[-(self.max_model_len - len(c)):]
        return p, c

    # --- the step loop --------------------------------------------------------------------
    def _run(self, seqs: list[Sequence], num_requests: int, use_tqdm: bool, desc: str) -> None:
        stats = self.stats = GenerationStats(num_prompt_tokens=sum(s.num_prompt_tokens for s in seqs))
        sched = self.scheduler
        preemptions, cached = sched.num_preemptions, sched.num_cached_tokens
        for s in seqs:
            sched.add(s)
        samples_left = Counter(s.request_index for s in seqs)
        bar = tqdm(total=num_requests, desc=desc, disable=not use_tqdm, dynamic_ncols=True)
        start = shown = perf_counter()
        try:
            while sched.has_unfinished():
                batch = sched.schedule()
                if not batch.seqs:
                    raise RuntimeError("the scheduler found nothing to run (KV cache too small?)")
                _count_step(batch, stats)
                out = self.runner.execute(batch)
                sched.advance(batch)
                for i, values in out.prompt_logprobs.items():
                    batch.seqs[i].prompt_logprobs.extend(values)
                for i, top in out.top_logprobs.items():
                    batch.seqs[i].next_token_logprobs = top
                for i, token in zip(out.sampled_rows, out.sampled):
                    seq = batch.seqs[i]
                    seq.token_ids.append(token)
                    reason = check_stop(seq, self.tokenizer, self.max_model_len)
                    if reason is not None:
                        self._finish(seq, reason, samples_left, bar)
                stats.num_output_tokens += len(out.sampled)
                for seq in batch.seqs:         # scoring / probing sequences end with their prefill
                    if seq.max_tokens == 0 and seq.num_computed_tokens == seq.num_tokens:
                        self._finish(seq, "length", samples_left, bar)
                if use_tqdm and perf_counter() - shown > 0.5:
                    shown = perf_counter()
                    el = shown - start
                    bar.set_postfix_str(f"prefill {stats.num_computed_prompt_tokens / el:.0f} tok/s, "
                                        f"output {stats.num_output_tokens / el:.0f} tok/s")
        except BaseException:
            for s in list(sched.running):          # leave the engine usable after an error
                sched.finish(s, "abort")
            sched.waiting.clear()
            raise
        finally:
            bar.close()
        stats.elapsed_s = perf_counter() - start
        stats.num_preemptions = sched.num_preemptions - preemptions
        stats.num_cached_prompt_tokens = sched.num_cached_tokens - cached

    def _finish(self, seq: Sequence, reason: str, samples_left: Counter, bar) -> None:
        self.scheduler.finish(seq, reason)
        samples_left[seq.request_index] -= 1
        if samples_left[seq.request_index] == 0:
            bar.update(1)


def _count_step(batch, stats: GenerationStats) -> None:
    stats.num_steps += 1
    stats.num_decode_steps += batch.is_decode
    for seq, k in zip(batch.seqs, batch.num_new_tokens):
        start, end, p = seq.num_computed_tokens, seq.num_computed_tokens + k, seq.num_prompt_tokens
        stats.num_computed_prompt_tokens += max(0, min(end, p) - start)
        stats.num_recomputed_tokens += max(0, min(end, seq.num_tokens - 1) - max(start, p))


def _resolve_model(model, tokenizer, dtype, device) -> tuple[CausalLM, object]:
    from engine.checkpoint import load_model
    from engine.tokenizer import Tokenizer

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if device is None:
            device = _default_device()
        loaded = load_model(path, dtype=dtype, device=device)
        if tokenizer is None:
            if (path / "tokenizer.json").is_file():
                tokenizer = Tokenizer.from_pretrained(path)
            else:
                warnings.warn(f"{path / 'tokenizer.json'} not found: this LLM has no tokenizer, so it "
                              "takes token-id prompts only and returns no text (pass tokenizer=...)")
        return loaded, tokenizer
    if not isinstance(model, CausalLM):
        raise TypeError(f"LLM(model=...) takes a checkpoint path or a CausalLM, got {type(model).__name__}")
    want_dtype = dtype_of(dtype) if dtype is not None else model.dtype
    want_device = torch.device(device) if device is not None else model.device
    if want_dtype != model.dtype or want_device != model.device:
        model = _converted_copy(model, want_dtype, want_device)
    return model, tokenizer


def _default_device() -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if distributed.rank_and_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cuda")


@torch.no_grad()
def _converted_copy(model: CausalLM, dtype: torch.dtype, device: torch.device) -> CausalLM:
    """A copy in another dtype / on another device; the caller's model stays untouched."""
    with torch.device("meta"):
        copy = CausalLM(model.config)
    state = {k: v.detach().to(device=device, dtype=dtype, copy=True) for k, v in model.state_dict().items()}
    copy.load_state_dict(state, assign=True)
    if model.config.tie_word_embeddings:
        copy.lm_head.weight = copy.model.embed_tokens.weight
    copy.init_rope()
    return copy


def _as_list(items, what: str) -> list:
    if isinstance(items, (str, bytes)) or (items and isinstance(items[0], int)):
        raise TypeError(f"{what} must be a list of strings or of token-id lists, not a single prompt")
    return list(items)


def _broadcast_params(params, n: int) -> list[SamplingParams]:
    if params is None:
        params = SamplingParams()
    if isinstance(params, SamplingParams):
        return [params] * n
    params = list(params)
    if len(params) != n:
        raise ValueError(f"{len(params)} SamplingParams for {n} prompts")
    return params


def _derived_seed(engine_seed: int, call: int, index: int) -> int:
    """A seed for a request without one: fixed by the engine seed, the call count and the
    request's index in the call (so data-parallel ranks draw what one process would)."""
    z = hash((engine_seed, call, index)) & 0x7FFFFFFFFFFF
    return z * 1024   # spaced out: samples of one request use seed + i
