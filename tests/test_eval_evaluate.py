"""evaluate_model and `generate-and-score` over a scripted stand-in for engine.LLM."""

import json
import types

import pytest

from engine.eval import evaluate_model
from engine.eval.__main__ import main
from engine.eval.ifeval import IFEvalPrompt, read_ifeval_data


@pytest.fixture
def generation_module():
    import engine.generation as module
    return module


class ChatTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt=False):
        return "<user>" + messages[0]["content"] + "<assistant>"


class FakeLLM:
    """Answers from a prompt -> answer function; as a judge prefers the answer with "good"."""

    def __init__(self, answer=lambda prompt: "", path=None):
        self.answer, self.path, self.tokenizer, self.calls = answer, path, ChatTokenizer(), []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        texts = []
        for p in prompts:
            if "[Answer A]" in p:
                a = p.split("[Answer A]")[1].split("[Answer B]")[0]
                texts.append("A" if "good" in a else "B")
            else:
                texts.append(self.answer(p))
        return [types.SimpleNamespace(text=t, token_ids=[], finish_reason="stop") for t in texts]

    def score(self, prompts, continuations):
        out = []
        for p, c in zip(prompts, continuations):
            a = p.split("[Answer A]")[1].split("[Answer B]")[0]
            out.append(types.SimpleNamespace(logprob=-1.0 if ("good" in a) == (c.strip() == "A")
                                             else -3.0, token_logprobs=[]))
        return out


DATA = [
    IFEvalPrompt(1, "Say hi without commas.", ("punctuation:no_comma",), ({},)),
    IFEvalPrompt(2, "Quote yourself.", ("startend:quotation", "punctuation:no_comma"), ({}, {})),
]
ANSWERS = {"Say hi without commas.": "hi there", "Quote yourself.": 'Sure, here:\n"me, myself"'}


def _unwrap(prompt):
    return prompt.removeprefix("<user>").removesuffix("<assistant>").removesuffix("\n")


def test_ifeval_metrics_from_generated_answers(generation_module):
    llm = FakeLLM(lambda p: ANSWERS[_unwrap(p)])
    metrics = evaluate_model(llm, ifeval_data=DATA, max_tokens=64)
    # strict: (T), (F, F); loose: (T), (T, F)
    assert metrics["prompt_level_strict_acc"] == 0.5
    assert metrics["inst_level_strict_acc"] == pytest.approx(1 / 3)
    assert metrics["prompt_level_loose_acc"] == 0.5
    assert metrics["inst_level_loose_acc"] == pytest.approx(2 / 3)
    prompts, params = llm.calls[0]
    assert prompts == ["Say hi without commas.\n", "Quote yourself.\n"]   # raw, no template
    assert params.temperature == 0.0 and params.seed == 0 and params.max_tokens == 64
    assert "win_rate" not in metrics


def test_chat_template_is_applied_when_asked(generation_module):
    llm = FakeLLM(lambda p: ANSWERS[_unwrap(p)])
    evaluate_model(llm, ifeval_data=DATA, use_chat_template=True)
    assert llm.calls[0][0][0] == "<user>Say hi without commas.<assistant>"


@pytest.mark.parametrize("judge_mode", ["generate", "logprob"])
def test_win_rate_against_reference(generation_module, judge_mode):
    model = FakeLLM(lambda p: "a good answer")
    reference = FakeLLM(lambda p: "a poor answer")
    judge = FakeLLM()
    metrics = evaluate_model(model, ifeval_data=DATA, reference_llm=reference, judge_llm=judge,
                             judge_mode=judge_mode, judge_prompts=["q1", "q2", "q3"],
                             reference_use_chat_template=True)
    assert metrics["win_rate"] == 1.0 and metrics["win_rate_se"] == 0.0
    assert (metrics["judge_wins"], metrics["judge_ties"], metrics["judge_n"]) == (3, 0, 3)
    assert reference.calls[0][0][0] == "<user>q1<assistant>"          # its own template flag
    assert model.calls[1][0][0] == "q1\n"
    reversed_metrics = evaluate_model(reference, ifeval_data=DATA, reference_llm=model,
                                      judge_llm=judge, judge_mode=judge_mode,
                                      judge_prompts=["q1", "q2", "q3"])
    assert reversed_metrics["win_rate"] == 0.0 and reversed_metrics["judge_losses"] == 3


def test_evaluate_model_is_repeatable(generation_module):
    model, reference, judge = FakeLLM(lambda p: "good"), FakeLLM(lambda p: "meh"), FakeLLM()
    runs = [evaluate_model(model, reference_llm=reference, judge_llm=judge, max_tokens=8)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0]["num_prompts"] == len(read_ifeval_data())   # our default prompt set


def test_reference_without_judge_is_refused():
    with pytest.raises(ValueError, match="judge_llm"):
        evaluate_model(FakeLLM(), ifeval_data=DATA, reference_llm=FakeLLM())
    with pytest.raises(ValueError, match="judge_mode"):
        evaluate_model(FakeLLM(), ifeval_data=DATA, judge_mode="vote")


def test_generate_and_score_command(generation_module, monkeypatch, tmp_path, capsys):
    made = []

    def fake_llm(path):
        made.append(FakeLLM(lambda p: ANSWERS[_unwrap(p)], path=path))
        return made[-1]

    monkeypatch.setattr(generation_module, "LLM", fake_llm, raising=False)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"key": d.key, "prompt": d.prompt,
                                        "instruction_id_list": list(d.instruction_ids),
                                        "kwargs": list(d.kwargs)}) + "\n" for d in DATA))
    out, responses = tmp_path / "m.json", tmp_path / "responses.jsonl"
    assert main(["generate-and-score", "--model", "some/dir", "--data", str(data),
                 "--out", str(out), "--max-tokens", "32", "--chat-template",
                 "--responses-out", str(responses)]) == 0
    assert made[0].path == "some/dir"
    assert made[0].calls[0][1].max_tokens == 32
    assert made[0].calls[0][0][0].startswith("<user>")
    written = json.loads(out.read_text())
    assert written == json.loads(capsys.readouterr().out)
    assert written["inst_level_loose_acc"] == pytest.approx(2 / 3)
    # the written responses score the same through the `ifeval` command
    assert main(["ifeval", "--data", str(data), "--responses", str(responses)]) == 0
    assert json.loads(capsys.readouterr().out) == written
