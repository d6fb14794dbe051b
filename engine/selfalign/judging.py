"""Self-assessment scores (I-SHEEP step 6): the judge's prompts and the three ways to score.

  sampled   the judge writes its judgement (sampled or greedy, seeded per request) and the
            text is parsed in the configured judge format; None when it has no score
  logprob   the expected score under the judge's distribution over "1||" .. "10||"
  oracle    an extension's checker (a perfect judge, for a control arm)

`score_pairs` is the one entry point: the assessment stage and the extensions' measures
both call it, so a measure scores exactly as the loop does.
"""
from __future__ import annotations

import hashlib

from engine.selfalign.assessment_prompts import build_assessment_prompt, score_continuations
from engine.selfalign.scores import expected_score, parse_judgement

KINDS_BY_LEVEL = {"none": (), "quality": ("quality",), "following": ("following",),
                  "both": ("quality", "following")}


def request_seed(*parts) -> int:
    """A stable 31-bit seed from any parts (not Python's salted hash)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def judge_prompt(llm, kind: str, pair: dict, chat: bool, judge_format: str) -> str:
    from engine.prompt_format import chat_prompt

    text = build_assessment_prompt(kind, pair["instruction"], pair["input"], pair["response"],
                                   judge_format)
    return chat_prompt(llm.tokenizer, text) if chat else text


def sampled_scores(llm, prompts: dict, a, seed_parts: tuple) -> dict:
    """{key: (score or None, judge text)}; key = (record id, kind), seeded per key."""
    from engine.generation import SamplingParams

    keys = list(prompts)
    params = [SamplingParams(temperature=a.temperature, top_p=a.top_p, max_tokens=a.max_tokens,
                             seed=request_seed(*seed_parts, *key)) for key in keys]
    outs = llm.generate([prompts[k] for k in keys], params, use_tqdm=False)
    return {k: (parse_judgement(o.outputs[0].text, a.judge_format), o.outputs[0].text)
            for k, o in zip(keys, outs)}


def logprob_scores(llm, prompts: dict) -> dict:
    """{key: expected score} under the judge's log-probs of "N||" (one prefill each)."""
    conts = score_continuations()
    keys = list(prompts)
    flat = llm.score([prompts[k] for k in keys for _ in conts],
                     [c for _ in keys for c in conts.values()])
    out = {}
    for i, k in enumerate(keys):
        row = flat[i * len(conts):(i + 1) * len(conts)]
        out[k] = round(expected_score({n: s.logprob for n, s in zip(conts, row)}), 4)
    return out


def score_pairs(pairs: list[dict], a, *, llm=None, chat: bool = False, oracle=None,
                seed_parts: tuple = ()) -> dict[str, dict]:
    """Scores of every pair ({"id", "instruction", "input", "response"}) under the
    assessment settings `a` (level, mode, judge_format, sampling).

    Returns {id: {"scores": {kind: score}, "judge_text": {kind: text}, "logprob_scores": ...}}
    with only the keys the mode produces. oracle: pairs -> scores, used for every kind when
    a.judge == "oracle".
    """
    kinds = KINDS_BY_LEVEL[a.level]
    out = {p["id"]: {} for p in pairs}
    if not kinds or not pairs:
        return out
    if a.judge == "oracle":
        verdicts = oracle(pairs)
        for p, v in zip(pairs, verdicts):
            out[p["id"]]["scores"] = {k: v for k in kinds}
        return out
    prompts = {(p["id"], k): judge_prompt(llm, k, p, chat, a.judge_format) for p in pairs for k in kinds}
    if a.mode in ("sample", "both"):
        sampled = sampled_scores(llm, prompts, a, seed_parts)
        for p in pairs:
            out[p["id"]]["scores"] = {k: sampled[(p["id"], k)][0] for k in kinds}
            out[p["id"]]["judge_text"] = {k: sampled[(p["id"], k)][1] for k in kinds}
    if a.mode in ("logprob", "both"):
        lp = logprob_scores(llm, prompts)
        for p in pairs:
            out[p["id"]]["logprob_scores"] = {k: lp[(p["id"], k)] for k in kinds}
    return out


def deciding_scores(scored: dict) -> dict:
    """The scores that decide a pair: the sampled-and-parsed ones when both ran (the
    reference rule), else whichever the mode produced."""
    return scored.get("scores", scored.get("logprob_scores", {}))


def lowest_score(scores: dict) -> float | None:
    """A pair's score at the 'both' level: the lowest of its kinds; None if any is unparsed."""
    values = list(scores.values())
    if not values or any(v is None for v in values):
        return None
    return min(values)
