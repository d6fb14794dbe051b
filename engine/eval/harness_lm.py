"""The engine as an lm-evaluation-harness model: ``SheepLM``, registered as ``sheep``.

This module imports lm-eval at its top; ``engine.eval.harness`` imports it only when an
evaluation runs, so lm-eval stays an optional extra (``pip install -e ".[eval]"``).

What it matches in the harness's ``hf`` backend (the tests hold it to these):
- text -> ids as the hf backend's ``tok_encode``: the tokenizer's own special tokens (BOS
  where the checkpoint adds one) unless the text already starts with the prefix token; the
  empty-context and trailing-space rules are lm-eval's own (``TemplateLM``).
- a (context, continuation) pair longer than max_length + 1 tokens keeps its last
  max_length + 1: the model reads max_length tokens and predicts the continuation's
  (left truncation, counted in ``truncated``).
- ``loglikelihood_rolling`` scores lm-eval's disjoint windows of max_length tokens.
- ``is_greedy``: every continuation token is the model's top-1 at its position.
- ``generate_until``: the context keeps its last max_length - max_gen_toks tokens (counted),
  greedy unless the request samples, stop strings cut as lm-eval's post-processing does.

Data parallelism lives in the engine: every rank runs the whole harness (so lm-eval sees
rank 0 of 1 and never splits documents), and each ``llm.score`` / ``generate`` call shards its
requests over the torchrun ranks and returns all results to every rank. lm-eval returns
results only where LOCAL_RANK is 0; the caller writes them on global rank 0.
"""
from __future__ import annotations

import inspect
import logging
import math
from collections import Counter
from pathlib import Path

import torch.distributed as dist
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from engine.generation import LLM, SamplingParams

log = logging.getLogger("sheep.eval.harness")

# a token with probability above one half is necessarily the argmax: no top-1 query needed
_LOG_HALF = math.log(0.5)


def _is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def build_llm(model_dir: str | Path, **llm_kwargs) -> LLM:
    """The engine for an evaluation; data-parallel under torchrun where the engine supports it."""
    if "data_parallel" in inspect.signature(LLM).parameters:
        llm_kwargs.setdefault("data_parallel", True)
    return LLM(model_dir, **llm_kwargs)


@register_model("sheep")
class SheepLM(TemplateLM):
    """lm-eval model over an engine ``LLM`` (given, or loaded once from ``pretrained``).

    ``max_length`` (tokens of context) defaults to the engine's ``max_model_len``.
    ``batch_size`` / ``max_batch_size`` / ``device`` come from lm-eval's command line and are
    ignored or passed on: the engine's scheduler does the batching.
    """

    def __init__(self, pretrained: str | None = None, *, llm: LLM | None = None,
                 max_length: int | None = None, dtype: str | None = None, device: str | None = None,
                 batch_size=None, max_batch_size=None, **llm_kwargs):
        super().__init__()
        if llm is None:
            if pretrained is None:
                raise ValueError("SheepLM needs a model directory (pretrained=DIR) or an engine LLM")
            llm = build_llm(pretrained, dtype=dtype, device=device, **llm_kwargs)
        if llm.tokenizer is None:
            raise ValueError("SheepLM needs an LLM with a tokenizer (harness requests are text)")
        self.llm = llm
        self.tokenizer = llm.tokenizer
        if max_length is not None and not 1 < int(max_length) <= llm.max_model_len:
            raise ValueError(f"max_length={max_length}: the engine's context is {llm.max_model_len}")
        self._max_length = int(max_length) if max_length else llm.max_model_len
        self._eot = self._find_eot()
        bos = self.tokenizer.bos_token_id
        self._bos_text = None if bos is None else self.tokenizer.decode([bos], skip_special_tokens=False)
        self._prefix_text = self.tokenizer.decode([self.prefix_token_id], skip_special_tokens=False)
        self.truncated: Counter = Counter()         # request type -> requests cut on the left

    def _find_eot(self) -> int:
        eos = self.tokenizer.special_tokens.get("eos_token")
        eot = self.tokenizer.token_to_id(eos) if eos else None
        if eot is None:
            ids = sorted(self.llm.eos_token_ids)
            if not ids:
                raise ValueError("the model has no end-of-sequence token (tokenizer_config "
                                 "eos_token or config eos_token_id); lm-eval needs one")
            eot = ids[0]
        return eot

    # --- what lm-eval asks of a model ------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self._eot

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return 256

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.source_dir or "sheep").replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]],
                            add_generation_prompt: bool = True) -> str:
        """The conversation rendered by the checkpoint's template. Without a generation prompt
        the harness is prefilling the last (assistant) message: the text stops right after it."""
        text = self.tokenizer.apply_chat_template(chat_history,
                                                  add_generation_prompt=add_generation_prompt)
        if not add_generation_prompt and chat_history:
            final = chat_history[-1]["content"].strip()
            if final and final in text:
                text = text[:text.rindex(final) + len(final)]
        return text

    def get_model_info(self) -> dict:
        return {"engine": "sheep", "model_dir": str(self.tokenizer.source_dir),
                "dtype": str(self.llm.model.dtype), "max_length": self.max_length}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        if add_special_tokens is None:     # the tokenizer's default, unless the text has the prefix
            add_special_tokens = not string.startswith(self._prefix_text)
        return self.tokenizer.encode(string, add_special_tokens=add_special_tokens)

    # --- log-likelihoods -------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        """[((context, continuation), context ids, continuation ids)] -> [(log-prob, is_greedy)]."""
        pairs = [(ctx, cont) for _, ctx, cont in requests]
        answers = self._score_pairs(pairs, with_greedy=True, count_as="loglikelihood",
                                    use_tqdm=not disable_tqdm)
        for (request, _, _), answer in zip(requests, answers):
            self.cache_hook.add_partial("loglikelihood", request, answer)
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for i, (string,) in enumerate(req.args for req in requests):
            for window in lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1):
                windows.append(lm_utils.make_disjoint_window(window))
                owner.append(i)
        scores = self._score_pairs(windows, with_greedy=False, count_as=None,
                                   use_tqdm=not disable_tqdm)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owner, scores):
            totals[i] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def _score_pairs(self, pairs: list[tuple[list[int], list[int]]], *, with_greedy: bool,
                     count_as: str | None, use_tqdm: bool) -> list[tuple[float, bool]]:
        """Summed log-probs (and is_greedy) of each continuation given its context, one engine
        call for all pairs. A pair of exactly the engine's context + 1 tokens (what hf reads
        after left truncation) has its last token scored from the next-token distribution of
        the tokens before it."""
        limit = self.max_length
        ctxs, conts, overflow = [], [], []
        for i, (ctx, cont) in enumerate(pairs):
            if not cont or len(cont) > limit:
                raise ValueError(f"request {i}: a continuation of {len(cont)} tokens cannot be "
                                 f"scored in a context of {limit}")
            full = list(ctx) + list(cont)
            if len(full) > limit + 1:
                full = full[-(limit + 1):]
                if count_as:
                    self._count_truncated(count_as, i, len(ctx) + len(cont), limit + 1)
            ctxs.append(full[:len(full) - len(cont)])
            conts.append(list(cont))
            overflow.append(len(full) > self.llm.max_model_len)
        use_tqdm = use_tqdm and _is_rank0()
        scored = self.llm.score(ctxs, [c[:-1] if o else c for c, o in zip(conts, overflow)],
                                use_tqdm=use_tqdm)
        logprobs = [list(s.token_logprobs) for s in scored]
        last_top1: dict[int, int] = {}
        tails = [i for i, o in enumerate(overflow) if o]
        for i, (logprob, top1) in zip(tails, self._last_token_logprobs(
                [ctxs[i] + conts[i][:-1] for i in tails], [conts[i][-1] for i in tails])):
            logprobs[i].append(logprob)
            last_top1[i] = top1
        greedy = (self._greedy_flags(ctxs, conts, logprobs, last_top1) if with_greedy
                  else [False] * len(pairs))
        return [(float(sum(lp)), g) for lp, g in zip(logprobs, greedy)]

    def _last_token_logprobs(self, prefixes: list[list[int]], targets: list[int]
                             ) -> list[tuple[float, int]]:
        """(log p(target | prefix), top-1 id) for each prefix, from the next-token distribution:
        the 64 most likely first, the whole vocabulary only where the target is not among
        them (the prefixes' blocks are cached by then, so the second pass is cheap)."""
        vocab = self.llm.model.config.vocab_size
        found: dict[int, tuple[float, int]] = {}
        for top_k in sorted({min(64, vocab), vocab}):
            todo = [i for i in range(len(prefixes)) if i not in found]
            if not todo:
                break
            for i, probs in zip(todo, self.llm.next_token_logprobs([prefixes[i] for i in todo],
                                                                   top_k=top_k)):
                if targets[i] in probs:
                    found[i] = (probs[targets[i]], max(probs, key=probs.get))
        return [found[i] for i in range(len(prefixes))]

    def _greedy_flags(self, ctxs, conts, logprobs, last_top1: dict[int, int]) -> list[bool]:
        """Is every continuation token the top-1 at its position? Tokens above probability one
        half are; the others are checked token by token with one batched top-1 query per
        round, a pair dropping out at its first miss and equal prefixes asked once."""
        greedy = [True] * len(conts)
        position = [0] * len(conts)
        pending = list(range(len(conts)))
        while pending:
            queries: dict[tuple[int, ...], list[int]] = {}
            for i in pending:
                j, cont = position[i], conts[i]
                while j < len(cont) and self._known_greedy(i, j, conts, logprobs, last_top1):
                    j += 1
                position[i] = j
                if j == len(cont):
                    continue
                if j == len(cont) - 1 and i in last_top1:     # known, and not the top-1
                    greedy[i] = False
                    continue
                queries.setdefault(tuple(ctxs[i] + cont[:j]), []).append(i)
            if not queries:
                break
            tops = self.llm.next_token_logprobs([list(q) for q in queries], top_k=1)
            pending = []
            for waiting, top in zip(queries.values(), tops):
                best = next(iter(top))
                for i in waiting:
                    if best == conts[i][position[i]]:
                        position[i] += 1
                        pending.append(i)
                    else:
                        greedy[i] = False
        return greedy

    @staticmethod
    def _known_greedy(i: int, j: int, conts, logprobs, last_top1: dict[int, int]) -> bool:
        if j == len(conts[i]) - 1 and i in last_top1:
            return last_top1[i] == conts[i][j]
        return logprobs[i][j] > _LOG_HALF

    def _count_truncated(self, request_type: str, i: int, length: int, kept: int) -> None:
        if not self.truncated[request_type]:
            log.warning("%s request %d has %d tokens: keeping its last %d (later ones are only "
                        "counted, in results['sheep']['truncated_requests'])",
                        request_type, i, length, kept)
        self.truncated[request_type] += 1

    # --- generation ------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        eos_text = self.tokenizer.decode([self._eot], skip_special_tokens=False)
        prompts, params, stops = [], [], []
        for i, (context, gen_kwargs) in enumerate(req.args for req in requests):
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            max_gen = kwargs.pop("max_gen_toks")
            room = self.max_length - max_gen
            if room <= 0:
                raise ValueError(f"request {i}: max_gen_toks={max_gen} leaves no room for the "
                                 f"context in max_length={self.max_length}")
            ids = self.tokenizer.encode(context, add_special_tokens=not (
                self._bos_text and context.startswith(self._bos_text)))
            if len(ids) > room:
                self._count_truncated("generate_until", i, len(ids), room)
                ids = ids[-room:]
            prompts.append(ids)
            params.append(self._sampling_params(kwargs, until, max_gen, eos_text))
            stops.append(until)
        outs = self.llm.generate(prompts, params,
                                 use_tqdm=not disable_tqdm and _is_rank0())
        texts = []
        for req, out, until in zip(requests, outs, stops):
            text = postprocess_generated_text(out.text, until, None)
            self.cache_hook.add_partial("generate_until", req.args, text)
            texts.append(text)
        return texts

    def _sampling_params(self, kwargs: dict, until: list[str], max_gen: int,
                         eos_text: str) -> SamplingParams:
        """Greedy unless the request samples; stop strings that are one special token (which
        decoded text never shows) stop on that token instead."""
        stop, stop_ids = [], []
        for s in until:
            tid = self.tokenizer.token_to_id(s)
            if s == eos_text or (tid is not None and not self.tokenizer.decode([tid])):
                stop_ids.extend([] if tid is None else [tid])
            elif s:
                stop.append(s)
        temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
        return SamplingParams(temperature=temperature, top_p=float(kwargs.get("top_p") or 1.0),
                              top_k=int(kwargs.get("top_k") or -1), max_tokens=max_gen,
                              stop=stop, stop_token_ids=stop_ids)
