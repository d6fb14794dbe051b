"""The engine as an lm-evaluation-harness backend, held to the harness's own `hf` backend.

Local tasks only (harness YAMLs over JSONL files written here; no network): multiple choice,
plain loglikelihood (its acc is is_greedy), rolling perplexity with documents longer than the
tiny models' 64-token context, and generate_until with two stop strings. Each model is a
random tiny qwen2 / llama (the llama one adds a BOS token) whose weights both backends read.
The targets and stop strings come from the model's own greedy text, so is_greedy is true for
some requests and the stop strings cut real generations.
"""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")          # lm-eval's hf backend, the reference

from engine.checkpoint import load_model, save_pretrained  # noqa: E402
from engine.eval import harness  # noqa: E402
from engine.eval.__main__ import main as eval_main  # noqa: E402
from engine.presets import random_init, write_tiny  # noqa: E402

CONTEXT = 64
MAX_GEN = 10
TASKS = ["sheep_mc", "sheep_ll", "sheep_ppl", "sheep_gen"]
WORDS = ("the cat sat on a mat and then it ran to the big red house where many people live "
         "over there tomorrow morning we will see what you are doing").split()
ROOT = Path(__file__).resolve().parent.parent


def _write_model(out: Path, model_type: str) -> Path:
    """The tiny preset with a 64-token context and weights large enough (std 0.2) that greedy
    text varies; the llama variant's tokenizer adds a BOS token like Llama checkpoints."""
    write_tiny(out, seed=1, model_type=model_type, max_position_embeddings=CONTEXT)
    model = load_model(out, dtype=torch.float32, device="cpu")
    random_init(model, seed=3, std=0.2)
    save_pretrained(model, out)
    if model_type == "llama":
        from tokenizers import Tokenizer, processors

        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        bos = "<|im_start|>"
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))])])
        tok.save(str(out / "tokenizer.json"))
        cfg = json.loads((out / "tokenizer_config.json").read_text())
        cfg.update(bos_token=bos, add_bos_token=True)
        (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out


def _greedy_texts(model_dir: Path, contexts: list[str], max_new: int) -> list[str]:
    """transformers' greedy continuations (the reference model's own text)."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = []
    with torch.no_grad():
        for c in contexts:
            ids = tok(c, return_tensors="pt").input_ids
            out = hf.generate(ids, max_new_tokens=max_new, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
            texts.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return texts


def _write_tasks(root: Path, model_dir: Path) -> dict:
    """JSONL data and harness YAMLs for the four tasks; returns what the tests check against."""
    rng = random.Random(0)
    sent = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))   # noqa: E731
    long_context = sent(90)                                          # > 64 tokens
    mc = [{"question": (long_context if i == 0 else sent(6)) + "?",
           "choices": [" " + sent(rng.randint(1, 3)) for _ in range(4)], "answer": i % 4}
          for i in range(5)]
    ll_contexts = [long_context if i == 0 else sent(6) for i in range(6)]
    greedy = _greedy_texts(model_dir, ll_contexts, 2)
    # even documents: the model's own greedy next tokens (is_greedy may hold); odd: a word
    ll = [{"context": c, "target": g if i % 2 == 0 else " " + sent(1)}
          for i, (c, g) in enumerate(zip(ll_contexts, greedy))]
    ppl = [{"text": sent(150 if i == 0 else 8 + 5 * i)} for i in range(4)]
    gen_contexts = [sent(4) + ":" for _ in range(5)] + [sent(80) + ":"]   # the last: too long
    free = _greedy_texts(model_dir, gen_contexts[:2], MAX_GEN)
    stops = [free[0][3:5], free[1][4:6]]       # two strings the model itself writes
    gen = [{"question": c, "answer": sent(1)} for c in gen_contexts]
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in {"mc": mc, "ll": ll, "ppl": ppl, "gen": gen}.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    head = lambda name: (f"task: sheep_{name}\ndataset_path: json\ndataset_kwargs:\n"   # noqa: E731
                         f"  data_files:\n    test: {root / (name + '.jsonl')}\ntest_split: test\n")
    metrics = lambda *names: "metric_list:\n" + "".join(   # noqa: E731
        f"  - metric: {m}\n    aggregation: {a}\n    higher_is_better: {h}\n" for m, a, h in names)
    (root / "mc.yaml").write_text(
        head("mc") + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
        + metrics(("acc", "mean", "true"), ("acc_norm", "mean", "true")))
    (root / "ll.yaml").write_text(
        head("ll") + "output_type: loglikelihood\ndoc_to_text: '{{context}}'\n"
        "doc_to_target: '{{target}}'\n"
        + metrics(("perplexity", "perplexity", "false"), ("acc", "mean", "true")))
    (root / "ppl.yaml").write_text(
        head("ppl") + "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{text}}'\n"
        + metrics(("word_perplexity", "weighted_perplexity", "false"),
                  ("byte_perplexity", "weighted_perplexity", "false"),
                  ("bits_per_byte", "bits_per_byte", "false")))
    (root / "gen.yaml").write_text(
        head("gen") + "output_type: generate_until\ndoc_to_text: '{{question}}'\n"
        f"doc_to_target: '{{{{answer}}}}'\ngeneration_kwargs:\n  until: {json.dumps(stops)}\n"
        f"  max_gen_toks: {MAX_GEN}\n  do_sample: false\n"
        + metrics(("exact_match", "mean", "true")))
    return {"stops": stops, "free": free, "mc": mc, "ll": ll, "ppl": ppl, "gen": gen}


def _hf_results(model_dir: Path, tasks_dir: Path, **kw) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=1)
    return lm_eval.simple_evaluate(model=lm, tasks=TASKS, log_samples=True, bootstrap_iters=0,
                                   task_manager=harness.task_manager(TASKS, str(tasks_dir)), **kw)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def case(request, tmp_path_factory):
    """(model dir, tasks dir, task facts, our results, hf's results) per architecture."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    root = tmp_path_factory.mktemp(f"harness_{request.param}")
    model_dir = _write_model(root / "model", request.param)
    facts = _write_tasks(root / "tasks", model_dir)
    ours = harness.evaluate_tasks(str(model_dir), TASKS, include_path=str(root / "tasks"),
                                  log_samples=True, bootstrap_iters=0, dtype="float32", device="cpu")
    return model_dir, root / "tasks", facts, ours, _hf_results(model_dir, root / "tasks")


def _responses(results: dict, task: str) -> list:
    """Per request, in document order: (log-likelihood, is_greedy), a rolling sum, or a text."""
    out = []
    for sample in sorted(results["samples"][task], key=lambda s: s["doc_id"]):
        for resp in sample["resps"]:
            r = resp[0]
            out.append(tuple(r) if isinstance(r, (list, tuple)) else r)
    return out


def _assert_same_metrics(ours: dict, ref: dict, task: str) -> None:
    mine, theirs = ours["results"][task], ref["results"][task]
    names = [k for k in theirs if "," in k and "stderr" not in k]
    assert names and set(names) <= set(mine)
    for k in names:
        assert float(mine[k]) == pytest.approx(float(theirs[k]), rel=1e-5, abs=1e-7), (task, k)


def test_multiple_choice_matches_hf_backend(case):
    _, _, facts, ours, ref = case
    _assert_same_metrics(ours, ref, "sheep_mc")
    got, want = _responses(ours, "sheep_mc"), _responses(ref, "sheep_mc")
    assert len(got) == len(want) == 4 * len(facts["mc"])
    for (lp, _), (ref_lp, _) in zip(got, want):
        assert lp == pytest.approx(ref_lp, abs=1e-4)


def test_loglikelihood_and_is_greedy_match_hf_backend(case):
    _, _, _, ours, ref = case
    _assert_same_metrics(ours, ref, "sheep_ll")
    got, want = _responses(ours, "sheep_ll"), _responses(ref, "sheep_ll")
    assert [g for _, g in got] == [g for _, g in want]
    assert any(g for _, g in want) and not all(g for _, g in want)   # both cases exercised
    for (lp, _), (ref_lp, _) in zip(got, want):
        assert lp == pytest.approx(ref_lp, abs=1e-4)


def test_rolling_perplexity_over_documents_longer_than_context_matches_hf(case):
    model_dir, _, facts, ours, ref = case
    from engine.tokenizer import Tokenizer

    longest = max(len(Tokenizer.from_pretrained(model_dir).encode(d["text"])) for d in facts["ppl"])
    assert longest > 2 * CONTEXT                      # several windows
    _assert_same_metrics(ours, ref, "sheep_ppl")
    for lp, ref_lp in zip(_responses(ours, "sheep_ppl"), _responses(ref, "sheep_ppl")):
        assert lp == pytest.approx(ref_lp, abs=1e-4)


def test_generate_until_two_stop_strings_identical_to_hf(case):
    _, _, facts, ours, ref = case
    _assert_same_metrics(ours, ref, "sheep_gen")
    got, want = _responses(ours, "sheep_gen"), _responses(ref, "sheep_gen")
    assert got == want
    # each stop string cuts the greedy text of the document it was taken from
    first, second = facts["stops"]
    for free, text in zip(facts["free"], got):
        assert text == free.split(first)[0].split(second)[0] and len(text) < len(free)


def test_over_long_requests_are_left_truncated_and_counted(case):
    model_dir, _, facts, ours, _ = case
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    n = lambda text: len(tok(text).input_ids)        # noqa: E731 (hf's own encoding)
    long_mc = sum(n(d["question"] + c) > CONTEXT + 1 for d in facts["mc"] for c in d["choices"])
    long_ll = sum(n(d["context"] + d["target"]) > CONTEXT + 1 for d in facts["ll"])
    long_gen = sum(n(d["question"]) > CONTEXT - MAX_GEN for d in facts["gen"])
    assert long_mc == 4 and long_ll == 1 and long_gen == 1
    assert ours["sheep"]["truncated_requests"] == {"loglikelihood": long_mc + long_ll,
                                                   "generate_until": long_gen}
    assert ours["sheep"]["max_length"] == CONTEXT


def test_chat_template_requests_match_hf_backend(case, tmp_path):
    model_dir, tasks_dir, _, _, _ = case
    ours = harness.evaluate_tasks(str(model_dir), ["sheep_mc", "sheep_gen"],
                                  include_path=str(tasks_dir), chat_template=True,
                                  log_samples=True, bootstrap_iters=0, dtype="float32", device="cpu")
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    ref = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=1),
        tasks=["sheep_mc", "sheep_gen"], apply_chat_template=True, log_samples=True,
        bootstrap_iters=0, task_manager=harness.task_manager(TASKS, str(tasks_dir)))
    for task in ["sheep_mc", "sheep_gen"]:
        prompts = [args[0] for s in ours["samples"][task] for args in s["arguments"]]
        assert all(p.startswith("<|im_start|>system") for p in prompts)
        _assert_same_metrics(ours, ref, task)
    assert _responses(ours, "sheep_gen") == _responses(ref, "sheep_gen")
    for (lp, _), (ref_lp, _) in zip(_responses(ours, "sheep_mc"), _responses(ref, "sheep_mc")):
        assert lp == pytest.approx(ref_lp, abs=1e-4)


def test_two_torchrun_ranks_give_one_process_metrics(case, tmp_path):
    model_dir, tasks_dir, _, ours, _ = case
    out = tmp_path / "ranks.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "engine.eval", "harness", "--model", str(model_dir), "--tasks", ",".join(TASKS),
           "--include-path", str(tasks_dir), "--out", str(out), "--log-samples", "--bootstrap-iters", "0",
           "--dtype", "float32", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"truncated_requests"') == 1     # rank 0 alone prints the results
    ranks = json.loads(out.read_text())
    for task in TASKS:
        _assert_same_metrics(ranks, ours, task)
    assert _responses(ranks, "sheep_gen") == _responses(ours, "sheep_gen")
    assert ranks["sheep"] == ours["sheep"]


def test_llama_case_prepends_bos_like_its_checkpoint(case):
    """The llama twin really exercises the BOS path (prefix token, tokenizer specials)."""
    import transformers

    from engine.tokenizer import Tokenizer

    model_dir = case[0]
    ref = transformers.AutoTokenizer.from_pretrained(model_dir)
    ids = ref("the cat sat").input_ids
    assert Tokenizer.from_pretrained(model_dir).encode("the cat sat") == ids
    if "llama" in model_dir.parent.name:
        assert ref.bos_token_id is not None and ids[0] == ref.bos_token_id
    else:
        assert ref.bos_token_id is None
