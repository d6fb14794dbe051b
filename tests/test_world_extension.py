"""The world extension on scripted inputs: its prompt filter, the oracle, and its measures of a
model and of an iteration's files, with the expected numbers worked out here by hand."""
import math
from collections import Counter
import re
from types import SimpleNamespace

from engine.selfalign.extension import ExtensionContext, load_extension
from engine.world.extension import WorldSettings
from engine.world.families import FAMILIES
from engine.world.tasks import SPLIT, targets_in

EXT = load_extension("engine.world.extension")
CODE_OF = FAMILIES["code"].code_of
WORD_OF = {c: w for w, c in CODE_OF.items()}


def _target(group, family):
    return targets_in(group, family)[0][1]


def test_extension_loads_with_its_settings():
    assert EXT.name == "world" and EXT.settings_class is WorldSettings
    EXT.configure(WorldSettings())


def test_filter_prompt_reasons():
    EXT.configure(WorldSettings(keep_out=True))
    practised, kept = _target("practised", "factor"), _target("kept_out", "code")
    assert EXT.filter_prompt(f"Find two numbers whose product is {practised}.", "") is None
    assert EXT.filter_prompt(f"Find the word whose code is {_target('taught', 'code')}.", "") is None
    assert EXT.filter_prompt(f"Find the word whose code is {kept}.", "") == "kept-out target"
    assert EXT.filter_prompt(f"Give a factor pair of {practised}.", "") == "held-out phrasing"
    assert EXT.filter_prompt("Find two numbers whose product is 37.", "") == "target out of range"
    assert EXT.filter_prompt("Name a color.", "") == "not a world task"
    EXT.configure(WorldSettings(keep_out=False))
    assert EXT.filter_prompt(f"Find the word whose code is {kept}.", "") is None
    EXT.configure(WorldSettings())


def test_oracle_scores_right_wrong_and_not_world():
    pairs = [{"instruction": "Find two numbers whose product is 91.", "input": "", "response": "Pair 7 and 13"},
             {"instruction": "Find two numbers whose product is 91.", "input": "", "response": "Pair 7 and 12"},
             {"instruction": "Write a haiku.", "input": "", "response": "Pair 7 and 13"}]
    assert EXT.oracle_scores(pairs) == [10.0, 1.0, None]


class FakeLLM:
    """Answers a factor question right when its target is even, a code question always wrong,
    and every forward fact right."""

    def generate(self, prompts, params, use_tqdm=False):
        outs = []
        for p in prompts:
            q = p.strip()
            if m := re.fullmatch(r"What is (\d+) times (\d+)\?", q):
                text = f"Result {int(m[1]) * int(m[2])}"
            elif m := re.fullmatch(r"What is the code of ([a-z]+)\?", q):
                text = f"Code {CODE_OF[m[1]]}"
            elif m := re.search(r"(?:product is|pair of) (\d+)", q):
                n = int(m[1])
                a = next((a for a in range(2, 20) if n % a == 0 and 2 <= n // a <= 19), 2)
                text = f"Pair {a} and {n // a}" if n % 2 == 0 else "Pair 2 and 2"
            else:
                n = int(re.search(r"(\d+)", q)[1])
                text = f"Word {WORD_OF[min(c for c in WORD_OF if c != n)]}"
            outs.append(SimpleNamespace(outputs=[SimpleNamespace(text=text, finish_reason="stop")]))
        return outs


def _ctx(iteration=1, files=None):
    run = SimpleNamespace(read=lambda it, name: files[name])
    return ExtensionContext(cfg=None, run=run, iteration=iteration, base_dir=None,
                            llm_for=lambda d: FakeLLM(), answer_prompt=lambda i, x, d: f"{i}\n",
                            judge=None)


def test_measure_model_counts_the_scripted_answers():
    EXT.configure(WorldSettings())
    got = EXT.measure_model(_ctx(iteration=1), "model")
    for group, key in (("practised", "practised"), ("kept_out", "unseen")):
        factor = [t for _, t in targets_in(group, "factor")]
        n_code = len(targets_in(group, "code"))
        even = sum(t % 2 == 0 for t in factor)
        want = even / (len(factor) + n_code)
        a = got["heldout"][key]
        assert a["n"] == len(factor) + n_code
        assert math.isclose(a["accuracy"], want, abs_tol=1e-4)
        assert math.isclose(a["stderr"], math.sqrt(want * (1 - want) / a["n"]), abs_tol=1e-4)
        assert a["per_family"]["code"]["accuracy"] == 0.0
        assert math.isclose(a["per_family"]["factor"]["accuracy"], even / len(factor), abs_tol=1e-4)
    assert got["forward"] == {"accuracy": 1.0, "stderr": 0.0, "n": 18 * 18 + 40}


def test_measure_iteration_by_hand():
    q = "Find two numbers whose product is {}.".format
    code = _target("practised", "code")
    responses = [
        {"instruction": q(24), "input": "", "response": "Pair 4 and 6", "drop": None},      # right
        {"instruction": q(24), "input": "", "response": "Pair 5 and 5", "drop": None},      # wrong
        {"instruction": q(30), "input": "", "response": "Pair 5 and 6", "drop": None},      # right
        {"instruction": q(30), "input": "", "response": "Pair 4 and 8", "drop": None},      # wrong
        {"instruction": f"Find the word whose code is {code}.", "input": "",
         "response": f"Word {WORD_OF[code]}", "drop": None},                                 # right
        {"instruction": "Say hi.", "input": "", "response": "hi", "drop": None},            # not world
        {"instruction": q(30), "input": "", "response": "", "drop": "empty"},               # dropped
    ]
    keep = [True, True, False, False, True, True]
    scores = [10, 9, None, 1, 10, 10]
    assessed = [{**r, "keep": k, "scores": {"quality": s}} for r, k, s in zip(responses, keep, scores)]
    train = [{"instruction": r["instruction"], "input": "", "output": r["response"]}
             for r, k in zip(responses, keep) if k]
    files = {"prompts.jsonl": [{"instruction": q(24), "input": ""}, {"instruction": q(30), "input": ""},
                               {"instruction": "Say hi.", "input": ""}],
             "responses.jsonl": responses, "assessed.jsonl": assessed, "train.jsonl": train}
    d = EXT.measure_iteration(_ctx(files=files))
    # 5 world pairs answered, 3 right; kept world pairs: 24 right, 24 wrong, code right
    assert d["answered"]["n"] == 5 and d["answered"]["accuracy"] == 0.6 and d["answered"]["not_world"] == 1
    assert d["kept"]["n"] == 3 and d["kept"]["accuracy"] == round(2 / 3, 4) and d["kept"]["not_world"] == 1
    j = d["judge"]
    assert j["precision"] == round(2 / 3, 4) and j["recall"] == round(2 / 3, 4)
    assert j["base_rate"] == 0.6 and j["unparsed"] == 1 and j["n"] == 5
    assert d["kept_targets"] == dict(Counter([SPLIT["factor"][24], "practised"]))
    assert sum(d["prompts"].values()) == 3 and d["prompts"]["other"] == 1


def _result(p, u, se=0.05, data=None):
    entry = {"heldout": {"practised": {"accuracy": p, "stderr": se, "n": 73, "per_family": {}},
                         "unseen": {"accuracy": u, "stderr": se, "n": 43, "per_family": {}},
                         "taught": {"accuracy": 0.9, "stderr": 0.03, "n": 57, "per_family": {}}},
             "forward": {"accuracy": 1.0, "stderr": 0.0, "n": 364}}
    if data:
        entry["data"] = data
    return entry


def _data(precision, base):
    return {"prompts": {"factor practised": 10}, "answered": {"accuracy": base, "stderr": 0.01, "n": 100},
            "kept": {"accuracy": precision, "stderr": 0.02, "n": 40},
            "judge": {"precision": precision, "recall": 0.9, "base_rate": base, "unparsed": 0},
            "kept_targets": {}}


def test_summary_and_report_say_whether_accuracy_rose(tmp_path):
    results = {"main": {0: _result(0.2, 0.2), 1: _result(0.3, 0.21, data=_data(0.7, 0.3)),
                        2: _result(0.45, 0.22, data=_data(0.8, 0.35))},
               "no_filter": {1: _result(0.15, 0.2, data=_data(0.3, 0.3)), 2: _result(0.1, 0.2, data=_data(0.3, 0.3))}}
    lines = EXT.summary_lines(results)
    text = "\n".join(lines)
    # practised: +0.25 against a combined stderr of sqrt(2) * 0.05 = 0.071 -> rose
    assert "practise (untrained phrasing, n=73) rose" in text and "+0.250" in text
    # kept-out: +0.02 is inside the noise
    assert "kept out of synthesis (untrained phrasing, n=43) did not change" in text
    assert "Control no_filter" in text and "0.100 ± 0.050" in text
    assert "at least twice the base rate" in text
    section = EXT.report_section(results, tmp_path / "plots")
    assert (tmp_path / "plots" / "world_heldout.png").stat().st_size > 1000
    assert any(line.startswith("| main | M_2 | 0.450 ± 0.050") for line in section)
    results["main"][2]["data"] = _data(0.5, 0.35)
    assert "NOT always" in "\n".join(EXT.summary_lines(results))
