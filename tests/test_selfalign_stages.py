"""Stage logic with a scripted model: the novelty pool's scope, the per-prompt cap, the
judge's sampling under the reference profile and its reproducibility on resume."""
import json
from types import SimpleNamespace

import pytest

from engine.selfalign import stages
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.settings import load_config

FIRST = "Describe the color of a ripe banana in one short sentence."
SIMILAR = "Describe the color of a ripe lemon in one short sentence."


class ScriptedLLM:
    """Continues meta-prompt number k with scripted[k] (one new task)."""

    def __init__(self, scripted):
        self.scripted, self.calls = scripted, 0

    def generate(self, prompts, params, use_tqdm=False):
        outs = []
        for _ in prompts:
            text = f" {self.scripted[self.calls]}\n6. Input:\n<noinput>\n"
            self.calls += 1
            outs.append(SimpleNamespace(text=text, finish_reason="stop",
                                        outputs=[SimpleNamespace(text=text, finish_reason="stop")]))
        return outs


def _synthesize(tmp_path, pool: str):
    cfg = load_config(None, ["synthesis.meta_prompts_per_round=1", "synthesis.max_rounds=2",
                             "synthesis.num_prompts=10", f"synthesis.novelty_pool={pool}"],
                      require_model=False)
    run = RunDirectory(tmp_path / pool)
    llm = ScriptedLLM([FIRST, SIMILAR])
    ctx = stages.IterationContext(cfg, run, 1, tmp_path, tmp_path, lambda d: llm)
    (run.iter_dir(1)).mkdir(parents=True)
    counts = stages.synthesize_prompts(ctx)
    return [r["instruction"] for r in run.read(1, "prompts.jsonl")], counts


def test_the_release_novelty_pool_resets_each_call(tmp_path):
    from engine.selfalign.rouge import rouge_l_f1
    assert rouge_l_f1(FIRST, SIMILAR) > 0.7        # the second task copies the first
    run_pool, run_counts = _synthesize(tmp_path, "run")
    call_pool, _ = _synthesize(tmp_path, "call")
    assert run_pool == [FIRST] and run_counts["dropped"] == {"similar": 1}
    assert call_pool == [FIRST, SIMILAR]            # kept in call 2: the pool holds only the seeds


def test_cap_per_prompt_keeps_the_best_scored():
    kept = [{"id": f"p{k // 3}-s{k % 3}", "prompt_id": f"p{k // 3}",
             "scores": {"quality": q, "following": f}} for k, (q, f) in
            enumerate([(9, 9), (10, 10), (9, 10), (10, 9), (9, 9), (10, 10)])]
    chosen, removed = stages.cap_per_prompt(kept, 1)
    assert [r["id"] for r in chosen] == ["p0-s1", "p1-s2"] and removed == 4
    chosen, removed = stages.cap_per_prompt(kept, 2)
    # ties on the lowest score go to the earlier sample
    assert [r["id"] for r in chosen] == ["p0-s0", "p0-s1", "p1-s0", "p1-s2"] and removed == 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from engine.presets import write_tiny
    return write_tiny(tmp_path_factory.mktemp("tiny") / "model")


def _assess(tiny_model, run_root, fault=False):
    from engine.generation import LLM
    from engine.selfalign.records import atomic_write_jsonl

    cfg = load_config(None, [f"run.model={tiny_model}", "run.profile=reference", "assessment.max_tokens=12",
                             "generation.chunk_size=3", "assessment.threshold=1"])
    run = RunDirectory(run_root)
    pairs = [{"id": f"it01-{k:06d}", "prompt_id": f"it01-{k:06d}", "instruction": f"Say a word {k}.",
              "input": "", "response": "word", "finish_reason": "stop", "drop": None} for k in range(6)]
    if not run.path(1, "responses.jsonl").is_file():
        atomic_write_jsonl(run.path(1, "responses.jsonl"), pairs)
    llm = LLM(str(tiny_model), dtype="float32", device="cpu")
    ctx = stages.IterationContext(cfg, run, 1, tiny_model, tiny_model, lambda d: llm)
    return cfg, stages.assess_pairs(ctx)


def test_reference_judge_samples_and_repeats_exactly_on_resume(tiny_model, tmp_path, monkeypatch):
    cfg, _ = _assess(tiny_model, tmp_path / "whole")
    assert (cfg.assessment.temperature, cfg.assessment.top_p) == (1.0, 0.95)
    whole = (tmp_path / "whole" / "iter_01" / "assessed.jsonl").read_text()
    texts = [t for r in map(json.loads, whole.splitlines()) for t in r["judge_text"].values()]
    assert len(set(texts)) > len(texts) // 2      # sampled at T 1.0: the judgements vary

    calls = {"n": 0}
    real = stages._save_chunk

    def save_then_stop(*a, **k):                  # the run stops after its first chunk
        real(*a, **k)
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "_save_chunk", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _assess(tiny_model, tmp_path / "resumed")
    monkeypatch.setattr(stages, "_save_chunk", real)
    _assess(tiny_model, tmp_path / "resumed")
    assert calls["n"] == 1
    assert (tmp_path / "resumed" / "iter_01" / "assessed.jsonl").read_text() == whole
