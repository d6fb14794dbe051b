"""Pairwise judging: order swapping, win rate and standard error, verdict parsing, and the
generate / logprob judges over a scripted LLM."""

import math
import types
import zlib

import pytest

from engine.eval.judge import (GenerationJudge, LogprobJudge, combine_orders, compare_answers,
                               judge_prompt, parse_verdict, read_judge_prompts, win_rate_with_se)


@pytest.fixture
def sampling_params():
    from engine.generation import SamplingParams
    return SamplingParams


class ScriptedJudge:
    """Answers from a table keyed by (instruction, response shown as A)."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def judge(self, instructions, responses_a, responses_b):
        self.calls.append((list(instructions), list(responses_a), list(responses_b)))
        return [self.table[(i, a)] for i, a in zip(instructions, responses_a)]


def test_order_swap_counts_disagreement_as_tie_with_hand_computed_se():
    instructions = ["p0", "p1", "p2", "p3", "p4"]
    ours = ["m0", "m1", "m2", "m3", "m4"]
    theirs = ["r0", "r1", "r2", "r3", "r4"]
    judge = ScriptedJudge({
        ("p0", "m0"): "A", ("p0", "r0"): "B",    # both orders pick ours: win
        ("p1", "m1"): "B", ("p1", "r1"): "A",    # both orders pick theirs: loss
        ("p2", "m2"): "A", ("p2", "r2"): "A",    # always the first answer: tie
        ("p3", "m3"): None, ("p3", "r3"): "B",   # unreadable verdict: tie
        ("p4", "m4"): "A", ("p4", "r4"): "B",    # win
    })
    result = compare_answers(judge, instructions, ours, theirs)
    # first call shows our answer as A, the second shows it as B
    assert judge.calls[0] == (instructions, ours, theirs)
    assert judge.calls[1] == (instructions, theirs, ours)
    assert result.scores == (1.0, 0.0, 0.5, 0.5, 1.0)
    assert (result.wins, result.ties, result.losses, result.n) == (2, 2, 1, 5)
    # mean 0.6; squared deviations .16 .36 .01 .01 .16 -> sample variance .70 / 4 = .175
    assert result.win_rate == pytest.approx(0.6)
    assert result.standard_error == pytest.approx(math.sqrt(0.175 / 5))
    assert result.as_dict()["win_rate_se"] == pytest.approx(0.1870829, abs=1e-6)


def test_win_rate_edge_cases():
    assert win_rate_with_se([1.0, 1.0, 1.0]) == (1.0, 0.0)
    rate, se = win_rate_with_se([0.5])
    assert rate == 0.5 and math.isnan(se)
    with pytest.raises(ValueError):
        win_rate_with_se([])
    with pytest.raises(ValueError):
        combine_orders(["A"], ["B", "A"])


@pytest.mark.parametrize("text, expected", [
    ("A", "A"), (" B.", "B"), ("**A**", "A"), ("Answer: B", "B"), ("(B) is better", "B"),
    ("The better one is Response A.", "A"), ("a tie, really", None), ("Both are fine", None),
    ("", None),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


class ScriptedLLM:
    """Stands in for engine.LLM as a judge: prefers the answer containing "good".

    ``noise`` makes it pick at random, seeded by SamplingParams.seed and the prompt, the
    way a sampling engine with a per-request seed behaves.
    """

    def __init__(self, noise=False):
        self.noise, self.generate_calls, self.score_calls = noise, [], []
        self.tokenizer = types.SimpleNamespace(
            apply_chat_template=lambda messages, add_generation_prompt: (
                "<user>" + messages[0]["content"] + "<assistant>"))

    @staticmethod
    def _preferred(prompt):
        a = prompt.split("[Answer A]")[1].split("[Answer B]")[0]
        return "A" if "good" in a else "B"

    def generate(self, prompts, params):
        self.generate_calls.append((prompts, params))
        texts = []
        for p in prompts:
            if self.noise:
                seed = params.seed + zlib.crc32(p.encode())
                texts.append(" " + "AB"[seed % 2])
            else:
                texts.append(" " + self._preferred(p) + " is better")
        return [types.SimpleNamespace(text=t, token_ids=[], finish_reason="stop") for t in texts]

    def score(self, prompts, continuations):
        self.score_calls.append((prompts, continuations))
        return [types.SimpleNamespace(
            logprob=-0.1 if c.strip() == self._preferred(p) else -2.3, token_logprobs=[])
            for p, c in zip(prompts, continuations)]


def test_generation_judge_reads_letters_greedily(sampling_params):
    llm = ScriptedLLM()
    result = compare_answers(GenerationJudge(llm), ["q1", "q2"], ["good one", "bad one"],
                             ["bad two", "good two"])
    assert result.scores == (1.0, 0.0)
    prompts, params = llm.generate_calls[0]
    assert params.temperature == 0.0 and params.seed == 0
    assert prompts[0].endswith("Better answer:") and "[Instruction]\nq1" in prompts[0]


@pytest.mark.parametrize("use_chat_template, letters", [(False, (" A", " B")), (True, ("A", "B"))])
def test_logprob_judge_compares_letter_logprobs(use_chat_template, letters):
    llm = ScriptedLLM()
    judge = LogprobJudge(llm, use_chat_template=use_chat_template)
    result = compare_answers(judge, ["q1", "q2", "q3"], ["good", "bad", "good"],
                             ["bad", "good", "bad"])
    assert result.scores == (1.0, 0.0, 1.0)
    prompts, continuations = llm.score_calls[0]
    assert set(continuations) == set(letters)
    assert prompts[0].startswith("<user>") == use_chat_template


def test_same_seed_gives_same_scores(sampling_params):
    instructions = [f"question {i}" for i in range(12)]
    ours = [f"answer {i}" for i in range(12)]
    theirs = [f"other {i}" for i in range(12)]
    first = compare_answers(GenerationJudge(ScriptedLLM(noise=True)), instructions, ours, theirs)
    second = compare_answers(GenerationJudge(ScriptedLLM(noise=True)), instructions, ours, theirs)
    assert first == second
    assert len(set(first.scores)) > 1        # the noisy judge really does vary across prompts


def test_judge_prompt_wraps_chat_template_only_when_asked():
    tok = ScriptedLLM().tokenizer
    raw = judge_prompt("Q", "a", "b")
    chat = judge_prompt("Q", "a", "b", tokenizer=tok, use_chat_template=True)
    assert raw.endswith("\nBetter answer:")
    assert chat.startswith("<user>") and chat.endswith("<assistant>")
    assert "[Answer A]\na\n\n[Answer B]\nb" in raw


def test_judge_prompt_file(tmp_path):
    instructions = read_judge_prompts()
    assert len(instructions) >= 50 and len(set(instructions)) == len(instructions)
    bad = tmp_path / "judge.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"instr": "typo"}\n')
    with pytest.raises(ValueError, match=r"judge.jsonl:2: "):
        read_judge_prompts(bad)
