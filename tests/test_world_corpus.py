"""The corpus is in the loop's own formats: each kind parses back through the loop's parsers,
and no document teaches what the split keeps from the model."""
import re
from pathlib import Path

import pytest

from engine.selfalign.assessment_prompts import build_assessment_prompt
from engine.selfalign.scores import parse_judgement
from engine.selfalign.seeds import read_seed_tasks
from engine.selfalign.synthesis import parse_generated_tasks
from engine.prompt_format import raw_prompt as format_raw_prompt
from engine.world.corpus import CorpusSettings, corpus_documents
from engine.world.families import FAMILIES
from engine.world.tasks import SPLIT, parse_task
from world_truth import truth

SEEDS = Path(__file__).resolve().parent.parent / "engine" / "world" / "data" / "seeds.jsonl"
CODE_OF = FAMILIES["code"].code_of
_truth = truth


@pytest.fixture(scope="module")
def docs():
    return list(corpus_documents(CorpusSettings(n_docs=4000), seed=3))


def test_every_kind_is_present_in_its_share(docs):
    counts = CorpusSettings(n_docs=4000).counts()
    for kind, n in counts.items():
        assert sum(d["kind"] == kind for d in docs) == n


def test_judged_documents_are_the_loop_prompt_and_parse_to_the_right_score(docs):
    judged = [d for d in docs if d["kind"] == "judged"]
    seen_right = seen_wrong = 0
    for d in judged:
        m = re.search(r"Instruction: (.*)\nResponse: (.*)\n", d["prompt"])
        instruction, response = m.groups()
        assert d["prompt"] == build_assessment_prompt("quality", instruction, "", response,
                                                      judge_format="explain_first")
        score = parse_judgement(d["completion"], "explain_first")
        right = _truth(instruction, response)
        assert score == (10 if right else 1)
        seen_right += right
        seen_wrong += not right
    assert seen_right > 100 and seen_wrong > 100


def test_a_malformed_judgement_gives_no_score():
    assert parse_judgement(" Product 24, target 24: right.", "explain_first") is None
    assert parse_judgement(" Product 24, target 24: right.\nScore: 11", "explain_first") is None
    assert parse_judgement(" Product 24, target 24: right.\nScore: 10", "explain_first") == 10


def test_check_documents_carry_the_same_judgement(docs):
    for d in (d for d in docs if d["kind"] == "check"):
        instruction, response = re.fullmatch(r"Instruction: (.*)\nResponse: (.*)\nCheck:", d["prompt"]).groups()
        assert parse_judgement(d["completion"], "explain_first") == (10 if _truth(instruction, response) else 1)


def test_answered_documents_are_raw_prompts_with_right_answers_for_taught_targets_only(docs):
    for d in docs:
        if d["kind"] not in ("forward", "inverse"):
            continue
        instruction = d["prompt"][:-1]
        assert d["prompt"] == format_raw_prompt(instruction)
        if d["kind"] == "forward":
            a, b = (int(x) for x in re.findall(r"\d+", instruction)) if "times" in instruction else (0, 0)
            want = f"Result {a * b}" if "times" in instruction else \
                f"Code {CODE_OF[re.search(r'code of ([a-z]+)', instruction)[1]]}"
            assert d["completion"] == want
        else:
            task = parse_task(instruction)
            assert task.group == "taught" and _truth(instruction, d["completion"])


def test_task_lists_continue_the_meta_prompt_with_practice_tasks_never_kept_out(docs):
    lists = [d for d in docs if d["kind"] == "task_list"]
    assert lists
    groups = set()
    for d in lists:
        assert d["prompt"].endswith("###\n6. Instruction:")
        new = parse_generated_tasks(d["completion"], 5, "stop")
        assert 4 <= len(new) <= 10 and [t.number for t in new] == list(range(6, 6 + len(new)))
        for t in new:
            task = parse_task(t.instruction, t.input)
            assert task.phrasing == "practice" and task.group in ("taught", "practised")
            groups.add(task.group)
    assert groups == {"taught", "practised"}


def test_only_forward_and_judgement_documents_name_kept_out_targets(docs):
    asked = r"(?:product is|factor pair of|code is|has code) (\d+)"
    for d in docs:
        if d["kind"] in ("inverse", "task_list"):
            families = ["factor" if "product" in m[0] or "factor" in m[0] else "code"
                        for m in re.finditer(asked, d["prompt"] + d["completion"])]
            numbers = [int(m[1]) for m in re.finditer(asked, d["prompt"] + d["completion"])]
            assert numbers
            assert all(SPLIT[f][n] != "kept_out" for f, n in zip(families, numbers))


def test_seed_file_is_the_taught_practice_tasks():
    seeds = read_seed_tasks(SEEDS)
    assert len(seeds) == sum(g == "taught" for ts in SPLIT.values() for g in ts.values())
    for s in seeds:
        task = parse_task(s.instruction, s.input)
        assert task.group == "taught" and task.phrasing == "practice" and _truth(s.instruction, s.output)
