"""The harness backend's bad input and set-up: unknown tasks fail by name before a model
loads, a missing lm-eval names the extra, the model loads once per evaluation, and the
assistant-prefill chat rendering equals transformers' continue_final_message."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from engine.eval import harness  # noqa: E402
from engine.eval import harness_lm  # noqa: E402
from engine.eval.__main__ import main as eval_main  # noqa: E402
from engine.presets import write_tiny  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("harness_tiny"), seed=4, max_position_embeddings=64)


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
    """Two small local tasks: a loglikelihood one and a generate_until one."""
    root = tmp_path_factory.mktemp("harness_tasks")
    rows = [{"q": f"question {i} is", "a": f" answer {i}"} for i in range(3)]
    (root / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    head = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {root / 'qa.jsonl'}\n"
            "test_split: test\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n")
    (root / "ll.yaml").write_text("task: tiny_ll\n" + head + "output_type: loglikelihood\n"
                                  "metric_list:\n  - metric: acc\n    aggregation: mean\n"
                                  "    higher_is_better: true\n")
    (root / "gen.yaml").write_text("task: tiny_gen\n" + head + "output_type: generate_until\n"
                                   "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 4\n"
                                   "metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
                                   "    higher_is_better: true\n")
    return root


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to build an engine fails the test loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(harness_lm, "build_llm", refuse)
    monkeypatch.setattr("engine.generation.llm.LLM.__init__", refuse)


def test_unknown_local_task_is_named_before_any_model_loads(tiny, tasks_dir, no_model_loads, capsys):
    harness.check_tasks(["tiny_ll", "tiny_gen"], str(tasks_dir))           # known: no error
    with pytest.raises(ValueError, match="unknown lm-eval task 'tiny_nope'"):
        harness.check_tasks(["tiny_ll", "tiny_nope"], str(tasks_dir))
    rc = eval_main(["harness", "--model", str(tiny), "--tasks", "tiny_ll,tiny_nope",
                    "--include-path", str(tasks_dir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: unknown lm-eval task 'tiny_nope'")


def test_builtin_task_names_are_checked(tasks_dir, no_model_loads):
    # (with the include path: the same index as the test above, built once)
    harness.check_tasks(["gsm8k", "ifeval", "tiny_ll"], str(tasks_dir))
    with pytest.raises(ValueError, match="'gsm8kk'") as info:
        harness.check_tasks(["gsm8k", "gsm8kk"], str(tasks_dir))
    assert "ifeval" not in str(info.value)


def test_bad_paths_give_one_line_errors(tiny, tasks_dir, tmp_path, no_model_loads, capsys):
    rc = eval_main(["harness", "--model", str(tmp_path / "missing"), "--tasks", "tiny_ll",
                    "--include-path", str(tasks_dir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"error: --model {tmp_path / 'missing'}: no such model directory"
    rc = eval_main(["harness", "--model", str(tiny), "--tasks", "tiny_ll",
                    "--include-path", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(tmp_path / "nowhere") in err


def test_missing_lm_eval_names_the_extra(tiny, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lm_eval", None)        # import lm_eval -> ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[eval\]"'):
        harness.check_tasks(["gsm8k"])
    with pytest.raises(ImportError, match=r"'eval' extra"):
        harness.evaluate_tasks(str(tiny), ["gsm8k"])
    rc = eval_main(["harness", "--model", str(tiny), "--tasks", "gsm8k"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and '".[eval]"' in err


def test_engine_imports_without_lm_eval():
    code = ("import sys; sys.modules['lm_eval'] = None\n"
            "import engine, engine.eval, engine.eval.harness, engine.eval.__main__\n"
            "from engine import LLM\n"
            "try:\n    engine.eval.harness.require_lm_eval()\nexcept ImportError as e:\n"
            "    print('missing:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'missing: lm-evaluation-harness is not installed' in proc.stdout


def test_model_loads_once_for_all_tasks_and_random_state_is_kept(tiny, tasks_dir, monkeypatch):
    import random

    import torch

    built = []
    real = harness_lm.build_llm

    def counting(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(harness_lm, "build_llm", counting)
    torch.manual_seed(11)
    random.seed(11)
    expected = torch.rand(3), random.random()
    torch.manual_seed(11)
    random.seed(11)
    results = harness.evaluate_tasks(str(tiny), ["tiny_ll", "tiny_gen"],
                                     include_path=str(tasks_dir), bootstrap_iters=0,
                                     dtype="float32", device="cpu")
    assert len(built) == 1
    after = torch.rand(3), random.random()          # lm-eval seeded both inside the call
    assert torch.equal(after[0], expected[0]) and after[1] == expected[1]
    assert set(results["results"]) == {"tiny_ll", "tiny_gen"}
    assert results["n-samples"]["tiny_ll"]["effective"] == 3
    json.dumps(results)                                       # JSON-serializable as returned


def test_continuation_longer_than_context_is_refused(tiny):
    from engine.generation import LLM

    lm = harness_lm.SheepLM(llm=LLM(tiny, dtype="float32", device="cpu"), max_length=16)
    with pytest.raises(ValueError, match="request 1: a continuation of 17 tokens"):
        lm._score_pairs([([1], [5] * 3), ([1], [5] * 17)], with_greedy=False, count_as=None,
                        use_tqdm=False)


def test_assistant_prefill_matches_transformers_continue_final_message(tiny):
    import transformers

    from engine.tokenizer import Tokenizer

    chat = [{"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "The answer is"}]
    ref = transformers.AutoTokenizer.from_pretrained(tiny)

    class Stub(harness_lm.SheepLM):     # the chat methods alone, without an engine
        def __init__(self):
            self.tokenizer = Tokenizer.from_pretrained(tiny)

    lm = Stub()
    assert lm.apply_chat_template(chat, add_generation_prompt=False) == ref.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=False, continue_final_message=True)
    assert lm.apply_chat_template(chat[:1]) == ref.apply_chat_template(
        chat[:1], tokenize=False, add_generation_prompt=True)
