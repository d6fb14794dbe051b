"""The I-SHEEP loop end to end on the tiny random model: run directory, report, settings
locked to the run, resume after a deterministic fault in the middle of a stage, Ctrl-C, and
the same data under 2 ranks.

A random model writes no task lists, so these runs answer hand-written prompts
(synthesis.prompts_from); synthesis itself runs in the toy-world loop test.
"""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.selfalign.loop import run_isheep
from engine.selfalign.records import read_jsonl
from engine.selfalign.settings import SettingsError, load_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "configs" / "tiny.toml"
RECIPE = ROOT / "recipes" / "isheep_qwen.py"
SMALL = ["run.iterations=1", "response.max_tokens=24", "generation.chunk_size=4",
         "eval.max_prompts=4", "eval.max_tokens=16", "training.seq_len=256"]
INSTRUCTIONS = ["Name three colors of the rainbow.", "Write a short greeting for a friend.",
                "Explain why the sky looks blue.", "List two uses of a paper clip.",
                "Give a synonym for the word happy.", "Describe a cat in one sentence.",
                "Suggest a name for a small boat.", "Summarize the plot of a fairy tale.",
                "Translate good morning into French.", "Count from one to five in words.",
                "Write a haiku about rain.", "State one fact about the moon."]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random model and a prompts directory with two iterations of prompts."""
    from engine.presets import write_tiny
    from engine.selfalign.records import atomic_write_jsonl, record_id

    root = tmp_path_factory.mktemp("loop")
    model = write_tiny(root / "model", seed=0)
    prompts = root / "prompts"
    for it in (1, 2):
        atomic_write_jsonl(prompts / f"iter_{it:02d}" / "prompts.jsonl",
                           [{"id": record_id(it, k), "instruction": text, "input": "x y" if k % 3 == 0 else ""}
                            for k, text in enumerate(INSTRUCTIONS)])
    return {"model": model, "prompts": prompts}


def _args(world, run_dir, extra=()):
    return [f"run.model={world['model']}", f"synthesis.prompts_from={world['prompts']}",
            f"run.run_dir={run_dir}", *SMALL, *extra]


def _cfg(world, run_dir, extra=()):
    return load_config(TINY, _args(world, run_dir, extra))


def _final_files(run_dir: Path) -> dict:
    return {name: read_jsonl(run_dir / "iter_01" / name)
            for name in ("prompts.jsonl", "responses.jsonl", "assessed.jsonl", "train.jsonl")}


def _recipe(args, env_extra=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, str(RECIPE), "--config", str(TINY), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def reference_run(world, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    old = os.umask(0o022)
    try:
        run_isheep(_cfg(world, run_dir))
    finally:
        os.umask(old)
    return run_dir


def test_run_writes_the_run_directory_and_report(reference_run):
    d = reference_run
    manifest = json.loads((d / "manifest.json").read_text())
    stages = manifest["iterations"]["1"]["stages"]
    for name in ("prompts", "responses", "assessed", "train_data", "model", "eval"):
        assert stages[name]["status"] == "done", name
    files = _final_files(d)
    c = {k: v["counts"] for k, v in stages.items()}
    assert len(files["prompts.jsonl"]) == c["prompts"]["kept"] == len(INSTRUCTIONS)
    assert len(files["responses.jsonl"]) == c["responses"]["answers"] == len(INSTRUCTIONS)
    kept_answers = [r for r in files["responses.jsonl"] if r["drop"] is None]
    assert len(files["assessed.jsonl"]) == len(kept_answers) == c["assessed"]["pairs"]
    kept_pairs = [r for r in files["assessed.jsonl"] if r["keep"]]
    assert len(files["train.jsonl"]) == len(kept_pairs) == c["train_data"]["examples"]
    # the threshold really filtered: everything kept scores above it, everything dropped not
    for r in files["assessed.jsonl"]:
        assert r["keep"] == all(v > 5.13 for v in r["logprob_scores"].values())
    assert 0 < len(kept_pairs) < len(kept_answers)
    assert c["model"]["trained"] and c["model"]["steps"] >= 1
    # one copy of the model: the export moved into iter_01/model
    assert (d / "iter_01" / "model" / "model.safetensors").is_file()
    assert not (d / "iter_01" / "train" / "model").exists()
    assert {"prompt_level_strict_acc", "win_rate"} <= set(json.loads((d / "iter_01" / "eval.json").read_text())["ifeval"])
    assert "ifeval" in json.loads((d / "base_eval.json").read_text())
    stats = json.loads((d / "iter_01" / "stats.json").read_text())
    assert stats["counts"]["train_data"] == c["train_data"] and stats["seconds"]["model"] > 0
    report = (d / "report.md").read_text()
    assert "**What ran:**" in report and "**What changed:**" in report and "**Do not over-read:**" in report
    assert "| 1 |" in report
    assert {p.name for p in (d / "plots").glob("*.png")} >= {"funnel.png", "scores.png", "loss.png", "eval.png"}
    ids = [r["id"] for r in files["responses.jsonl"]]
    assert len(ids) == len(set(ids))


def test_run_files_are_readable_by_the_group_and_others(reference_run):
    """Written under umask 022: 0644, not mkstemp's 0600."""
    for path in [reference_run / "manifest.json", reference_run / "config.toml",
                 reference_run / "iter_01" / "responses.jsonl", reference_run / "iter_01" / "model" / "config.json",
                 reference_run / "iter_01" / "model" / "model.safetensors"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, (path, oct(mode))


def test_environment_records_every_invocation(world, reference_run):
    before = (reference_run / "iter_01" / "responses.jsonl").stat().st_mtime_ns
    run_isheep(_cfg(world, reference_run))       # finished: nothing is redone
    assert (reference_run / "iter_01" / "responses.jsonl").stat().st_mtime_ns == before
    entries = json.loads((reference_run / "environment.json").read_text())
    assert len(entries) == 2
    for e in entries:
        assert e["commit"] and e["argv"] and e["versions"]["torch"] and e["device"] and e["threads"] >= 1


def test_changed_decisions_are_refused_and_more_iterations_proceed(world, tmp_path):
    run_dir = tmp_path / "run"
    run_isheep(_cfg(world, run_dir, ["eval.enabled=false"]))
    with pytest.raises(SettingsError, match=r"assessment\.threshold: 5\.13 -> 5\.0"):
        _cfg_checked = _cfg(world, run_dir, ["eval.enabled=false", "assessment.threshold=5.0"])
        run_isheep(_cfg_checked)
    assert not (run_dir / "iter_02").exists()
    run_isheep(_cfg(world, run_dir, ["eval.enabled=false", "run.iterations=2"]))
    assert json.loads((run_dir / "manifest.json").read_text())["iterations"]["2"]["stages"]["model"]["status"] == "done"


@pytest.mark.parametrize("stage_file, n", [("responses.jsonl", 2), ("assessed.jsonl", 1)])
def test_fault_mid_stage_then_resume_gives_the_same_data(world, reference_run, tmp_path, stage_file, n):
    """A hard exit after the n-th saved chunk (no clean-up, like a kill), then a rerun."""
    run_dir = tmp_path / "run"
    out = _recipe(["--run-dir", str(run_dir), *_args(world, run_dir)],
                  {"SHEEP_FAULT": f"{stage_file}:{n}:exit"})
    assert out.returncode == 137, out.stderr[-2000:]
    stem = stage_file.replace(".jsonl", "")
    assert (run_dir / "iter_01" / f"{stem}.partial.jsonl").is_file()
    assert not (run_dir / "iter_01" / stage_file).exists()
    run_isheep(_cfg(world, run_dir))          # resume
    got, want = _final_files(run_dir), _final_files(reference_run)
    for name in want:
        assert got[name] == want[name], name
    counts = json.loads((run_dir / "manifest.json").read_text())["iterations"]["1"]["stages"]
    ref_counts = json.loads((reference_run / "manifest.json").read_text())["iterations"]["1"]["stages"]
    for name in ("prompts", "responses", "assessed", "train_data"):
        assert counts[name]["counts"] == ref_counts[name]["counts"], name


def test_ctrl_c_prints_one_line_and_the_rerun_resumes(world, reference_run, tmp_path):
    run_dir = tmp_path / "run"
    args = ["--run-dir", str(run_dir), *_args(world, run_dir), "eval.enabled=false"]
    out = _recipe(args, {"SHEEP_FAULT": "responses.jsonl:1:sigint"})
    assert out.returncode == 130
    lines = [ln for ln in out.stderr.splitlines() if ln.strip() and " sheep." not in ln]
    assert lines == ["interrupted during iteration 1 responses; run the same command again to resume"]
    again = _recipe(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _final_files(run_dir)["responses.jsonl"] == _final_files(reference_run)["responses.jsonl"]


def test_n_samples_per_prompt_with_duplicates_and_a_cap(world, tmp_path):
    run_dir = tmp_path / "run"
    run_isheep(_cfg(world, run_dir, ["eval.enabled=false", "response.n=3", "training.max_per_prompt=1",
                                     "assessment.threshold=1"]))
    responses = read_jsonl(run_dir / "iter_01" / "responses.jsonl")
    assert len(responses) == 3 * len(INSTRUCTIONS)
    duplicates = 0
    for k in range(len(INSTRUCTIONS)):
        group = [r for r in responses if r["prompt_id"] == f"it01-{k:06d}"]
        assert [r["id"] for r in group] == [f"it01-{k:06d}-s{j:02d}" for j in range(3)]
        for j, r in enumerate(group):   # a repeat of an earlier answer to the prompt is dropped
            earlier = [g for g in group[:j] if g["response"] == r["response"]]
            if r["drop"] == "duplicate":
                assert earlier, r
            if any(g["drop"] is None for g in earlier):   # same text passed the filters before
                assert r["drop"] == "duplicate", r
            duplicates += r["drop"] == "duplicate"
    kept = [r for r in read_jsonl(run_dir / "iter_01" / "assessed.jsonl") if r["keep"]]
    train = read_jsonl(run_dir / "iter_01" / "train.jsonl")
    by_prompt = {r["prompt_id"] for r in kept}
    assert len(kept) > len(by_prompt)            # the cap had something to cut
    assert len(train) == len(by_prompt)          # at most one pair per prompt, one for each
    assert {r["id"].rsplit("-s", 1)[0] for r in train} == by_prompt


def test_two_ranks_produce_the_same_data_as_one(world, reference_run, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(RECIPE), "--config", str(TINY), *_args(world, run_dir), "eval.enabled=false"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    got, want = _final_files(run_dir), _final_files(reference_run)
    for name in want:
        assert got[name] == want[name], name
    assert (run_dir / "iter_01" / "model" / "model.safetensors").is_file()


def test_ablation_settings_change_what_the_loop_does(world, tmp_path):
    run_dir = tmp_path / "run"
    # threshold 1: every expected score is above it, so both iterations bring data
    run_isheep(_cfg(world, run_dir, ["run.iterations=2", "assessment.judge=self", "assessment.threshold=1",
                                     "training.start_from=previous", "training.data=cumulative",
                                     "training.method=lora", "eval.enabled=false"]))
    stages = json.loads((run_dir / "manifest.json").read_text())["iterations"]
    train1 = read_jsonl(run_dir / "iter_01" / "train.jsonl")
    train2 = read_jsonl(run_dir / "iter_02" / "train.jsonl")
    assert train1 and {r["id"] for r in train1} < {r["id"] for r in train2}
    model2 = stages["2"]["stages"]["model"]["counts"]
    assert model2["trained"] and model2["start"].endswith("iter_01/model")
    assert (run_dir / "iter_02" / "model" / "model.safetensors").is_file()


def test_both_scorings_run_and_the_sampled_one_decides(world, tmp_path):
    run_dir = tmp_path / "run"
    run_isheep(_cfg(world, run_dir, ["assessment.mode=both", "eval.enabled=false"]))
    assessed = read_jsonl(run_dir / "iter_01" / "assessed.jsonl")
    assert assessed and all(set(r) >= {"scores", "logprob_scores", "keep", "keep_logprob"} for r in assessed)
    assert all(r["keep"] == all(v is not None and v > 5.13 for v in r["scores"].values()) for r in assessed)
    assert any(r["keep_logprob"] for r in assessed)
    counts = json.loads((run_dir / "manifest.json").read_text())["iterations"]["1"]["stages"]
    assert counts["model"]["counts"]["trained"] is False   # nothing to train on: M_1 = M_0
    assert "Sampled-and-parsed versus log-prob scoring" in (run_dir / "report.md").read_text()


def test_tensorboard_tracker_holds_the_iteration_counts(world, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    run_isheep(_cfg(world, run_dir, ["eval.enabled=false", "run.tracker=tensorboard"]))
    counts = json.loads((run_dir / "manifest.json").read_text())["iterations"]["1"]["stages"]
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    for key in ("counts/assessed/kept", "counts/train_data/examples", "counts/responses/answers"):
        stage, name = key.split("/")[1:]
        events = acc.Scalars(key)
        assert [(e.step, e.value) for e in events] == [(1, counts[stage]["counts"][name])], key


def test_fast_cpu_path_and_reference_path_write_the_same_data(world, tmp_path):
    """The loop through the batched CPU ops and through the torch reference ops: the same
    records, or (where float rounding flips a sampled token) under 2% of them differ."""
    from engine import ops

    runs = {}
    for backend in ("torch", "cpu"):
        ops.set_backend(backend)
        try:
            runs[backend] = tmp_path / backend
            run_isheep(_cfg(world, runs[backend], ["eval.enabled=false", "response.n=2"]))
        finally:
            ops.set_backend(None)
    ref, fast = _final_files(runs["torch"]), _final_files(runs["cpu"])
    total = differing = 0
    for name in ref:
        pairs = list(zip(ref[name], fast[name]))
        total += max(len(ref[name]), len(fast[name]))
        differing += abs(len(ref[name]) - len(fast[name])) + sum(a != b for a, b in pairs)
    assert total > 0 and differing <= 0.02 * total, (differing, total)


def _harness_tasks(root: Path) -> Path:
    """Two local lm-eval tasks over JSONL files: multiple choice and rolling perplexity."""
    root.mkdir(parents=True, exist_ok=True)
    mc = [{"question": f"Pick a word {k}?", "choices": [" red", " blue", " green"], "answer": k % 3}
          for k in range(4)]
    ppl = [{"text": f"a short line of text number {k}"} for k in range(3)]
    for name, rows in {"mc": mc, "ppl": ppl}.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    head = lambda n: (f"task: loop_{n}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"   # noqa: E731
                      f"    test: {root / (n + '.jsonl')}\ntest_split: test\n")
    (root / "mc.yaml").write_text(head("mc") + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
                                  "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
                                  "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    (root / "ppl.yaml").write_text(head("ppl") + "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
                                   "doc_to_target: '{{text}}'\nmetric_list:\n  - metric: word_perplexity\n"
                                   "    aggregation: weighted_perplexity\n    higher_is_better: false\n")
    return root


def test_harness_tasks_run_per_iteration_and_resume_per_task(world, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    from engine.selfalign import measures

    tasks = _harness_tasks(tmp_path / "tasks")
    run_dir = tmp_path / "run"
    extra = ["eval.enabled=false", f"eval.harness_include_path={tasks}",
             'eval.harness_tasks=["loop_mc", "loop_ppl"]']
    calls = []
    real = measures.harness_task

    def second_task_interrupted(ctx, model_dir, task):
        calls.append((ctx.iteration, task))
        if (ctx.iteration, task) == (1, "loop_ppl") and calls.count((1, "loop_ppl")) == 1:
            raise KeyboardInterrupt
        return real(ctx, model_dir, task)

    monkeypatch.setattr(measures, "harness_task", second_task_interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_isheep(_cfg(world, run_dir, extra))
    run_isheep(_cfg(world, run_dir, extra))           # resume: only the unfinished task runs
    assert calls == [(0, "loop_mc"), (0, "loop_ppl"), (1, "loop_mc"), (1, "loop_ppl"), (1, "loop_ppl")]
    for path in (run_dir / "base_eval.json", run_dir / "iter_01" / "eval.json"):
        ev = json.loads(path.read_text())
        assert 0 <= ev["harness.loop_mc"]["results"]["loop_mc"]["acc,none"] <= 1
        assert ev["harness.loop_ppl"]["results"]["loop_ppl"]["word_perplexity,none"] > 1
    report = (run_dir / "report.md").read_text()
    assert "## Benchmarks (lm-evaluation-harness)" in report and "| M_1 |" in report
    assert (run_dir / "plots" / "harness.png").is_file()


def test_an_unknown_harness_task_fails_when_the_config_is_read(world, tmp_path):
    pytest.importorskip("lm_eval")
    tasks = _harness_tasks(tmp_path / "tasks")
    with pytest.raises(SettingsError, match="loop_nope"):
        _cfg(world, tmp_path / "run", [f"eval.harness_include_path={tasks}", 'eval.harness_tasks=["loop_nope"]'])
