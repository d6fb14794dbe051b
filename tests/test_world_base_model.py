"""The shipped world base model M_0: its files and record, and that it has the gap the loop
needs (knows the forward facts and the taught answers, judges its own answers far better
than their base rate), checked here with the world's checker on freshly drawn tasks."""
import json
import random
from pathlib import Path

import pytest

from engine.generation import LLM
from engine.prompt_format import raw_prompt as format_raw_prompt
from engine.world.families import FAMILIES
from engine.world.model_measures import generate, judge_scores
from engine.world.tasks import WorldTask, targets_in

SHIPPED = Path(__file__).resolve().parent.parent / "engine" / "world" / "data" / "base_model"
RECORD = SHIPPED.with_suffix(".json")


@pytest.fixture(scope="module")
def llm():
    return LLM(str(SHIPPED), dtype="float32", device="cpu", kv_cache_bytes=32 * 2**20,
               max_num_seqs=128, max_num_batched_tokens=8192, seed=0)


def test_shipped_files_are_small_fp32_and_match_the_tokenizer():
    cfg = json.loads((SHIPPED / "config.json").read_text())
    from tokenizers import Tokenizer as HFTokenizer
    vocab = HFTokenizer.from_file(str(SHIPPED / "tokenizer.json")).get_vocab_size()
    assert cfg["torch_dtype"] == "float32" and cfg["vocab_size"] == vocab
    assert (SHIPPED / "model.safetensors").stat().st_size < 8 * 2**20


def test_record_has_the_measures_and_the_judge_beats_twice_the_base_rate():
    m = json.loads(RECORD.read_text())["measures"]
    judge = m["judge_own_samples"]
    assert judge["precision"] >= 2 * judge["base_rate"]
    assert judge["recall"] >= 0.7
    assert m["heldout"]["forward"]["accuracy"] >= 0.95
    assert m["samples"]["pass_at_k"]["accuracy"] > m["heldout"]["practised"]["accuracy"]


def test_m0_knows_the_forward_facts_and_the_taught_answers(llm):
    rng = random.Random(7)
    facts = rng.sample([f for fam in FAMILIES.values() for f in fam.forward_facts()], 40)
    answers = generate(llm, [format_raw_prompt(q) for q, _ in facts])
    assert sum(a[0] == want for (_, want), a in zip(facts, answers)) >= 38
    taught = [WorldTask(f, t) for f, t in rng.sample(targets_in("taught"), 20)]
    answers = generate(llm, [format_raw_prompt(t.instruction) for t in taught])
    assert sum(FAMILIES[t.family].check(t.target, a[0]).right for t, a in zip(taught, answers)) >= 16


def test_judged_keep_is_more_often_right_than_what_m0_answers(llm):
    """Fresh practised tasks, 6 samples each: the pairs M_0's judge keeps (score > 8) are
    right far more often than all its answers (truth from the checker)."""
    rng = random.Random(11)
    tasks = [WorldTask(f, t) for f, t in rng.sample(targets_in("practised"), 30)]
    samples = generate(llm, [format_raw_prompt(t.instruction) for t in tasks], temperature=1.0,
                       n=6, seed=3)
    pairs = [(t, a) for t, ss in zip(tasks, samples) for a in dict.fromkeys(ss)]
    scores, _ = judge_scores(llm, [(t.instruction, "", a) for t, a in pairs])
    right = [FAMILIES[t.family].check(t.target, a).right for t, a in pairs]
    kept = [r for r, s in zip(right, scores) if s is not None and s > 8]
    base = sum(right) / len(right)
    assert kept and sum(kept) / len(kept) >= min(1.0, 2 * base)
