"""Does the loop's self-assessment pick right answers? The shipped base model, judged by itself.

The shipped world base model (engine/world/data/base_model) answers 8 held-out tasks of each
of the 9 families (seed 2) with 4 samples each at the loop's response settings (temperature
1.0, top_p 0.95, seeded): 288 pairs. Each pair is scored exactly as the loop scores it with
recipes/configs/world.toml (assessment.mode = "logprob": expected score over "1||".."10||"
for quality and for following) and kept when both clear assessment.threshold. The checker
says which pairs are right.

Measured (torch 2.13 CPU) with the shipped two-stage model: 288 pairs, 58 right (20.1%);
kept 152, of which 50 right (32.9%); dropped 136, 8 right (5.9%); two-proportion z (kept vs
dropped) = 5.7. Most of that lift is the judge knowing which families it answers well, not
checking each answer: within a family its AUC is near or below chance except for end word
(docs/world/README.md). The first base model, trained without graded pairs over its own
answers, kept 16.3% right against 16.0% of all (z = 0.19), and this test was an expected
failure then.
"""
import math
from pathlib import Path

import pytest

from engine.generation import LLM
from engine.selfalign.selection import passes
from engine.selfalign.settings import load_config
from engine.selfalign.stages import KINDS_BY_LEVEL
from engine.world.model_measures import logprob_scores, sample_answers
from engine.world.tasks import held_out_tasks

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "engine" / "world" / "data" / "base_model"
CONFIG = ROOT / "recipes" / "configs" / "world.toml"
TASKS_PER_FAMILY, SAMPLES, SEED = 8, 4, 2


@pytest.fixture(scope="module")
def judged_pairs():
    """[(right, kept)] for every sampled pair, scored as world.toml's loop scores them."""
    cfg = load_config(CONFIG)
    llm = LLM(str(BASE), dtype="float32", device="cpu", kv_cache_bytes=64 * 2**20,
              max_num_seqs=64, max_num_batched_tokens=4096)
    r = cfg.response
    answers = sample_answers(llm, held_out_tasks(TASKS_PER_FAMILY, seed=SEED), SAMPLES, SEED,
                             r.temperature, r.top_p, r.max_tokens)
    triples = [(task.instruction, task.input, response) for task, response, _ in answers]
    right = [ok for _, _, ok in answers]
    a = cfg.assessment
    scores = {k: logprob_scores(llm, triples, k) for k in KINDS_BY_LEVEL[a.level]}
    kept = [passes({k: v[i] for k, v in scores.items()}, a.level, a.threshold)
            for i in range(len(triples))]
    return list(zip(right, kept))


def _z_kept_vs_dropped(pairs) -> tuple[float, float, float]:
    """(right share of all, right share of kept, z of kept vs dropped right shares)."""
    kept = [r for r, k in pairs if k]
    dropped = [r for r, k in pairs if not k]
    p_all = sum(r for r, _ in pairs) / len(pairs)
    p_kept, p_dropped = sum(kept) / len(kept), sum(dropped) / len(dropped)
    se = math.sqrt(p_all * (1 - p_all) * (1 / len(kept) + 1 / len(dropped)))
    return p_all, p_kept, (p_kept - p_dropped) / se


def test_sample_can_tell_a_working_judge_from_a_blind_one(judged_pairs):
    """The statement below has power: with n pairs, a right share p and a kept share k, a
    judge lifting the kept share by 10 points over the dropped share gives z = 0.1 /
    sqrt(p (1 - p) (1/(k n) + 1/((1 - k) n))), above 2 for this sample."""
    n = len(judged_pairs)
    p = sum(r for r, _ in judged_pairs) / n
    k = sum(kept for _, kept in judged_pairs) / n
    assert n == 9 * TASKS_PER_FAMILY * SAMPLES
    assert 0.1 < p < 0.5 and 0.25 < k < 0.75
    assert 0.1 / math.sqrt(p * (1 - p) * (1 / (k * n) + 1 / ((1 - k) * n))) > 2.0


def test_threshold_keeps_a_larger_share_of_right_pairs(judged_pairs):
    p_all, p_kept, z = _z_kept_vs_dropped(judged_pairs)
    kept = sum(k for _, k in judged_pairs)
    print(f"{len(judged_pairs)} pairs, {kept} kept; right share: all {p_all:.3f}, "
          f"kept {p_kept:.3f}, z {z:.2f}")
    assert p_kept > p_all and z > 2.0, (p_all, p_kept, z)
