import json
import random

import pytest

from engine.selfalign.assessment_prompts import ASSESSMENT_KINDS, build_assessment_prompt
from engine.selfalign.scores import parse_score
from engine.selfalign.seeds import read_seed_tasks
from engine.selfalign.synthesis import build_meta_prompt, meta_prompt_header, parse_generated_tasks
from engine.world.base_model import world_tokenizer
from engine.world.corpus import (CorpusMix, CorpusSettings, corpus_documents,
                                 own_answer_graded_documents,
                                 parse_answered_document, split_graded_document,
                                 split_task_list_document, write_corpus)
from engine.world.families import FAMILIES
from engine.world.seeds import seed_tasks_for_world, write_seed_file
from engine.world.tasks import (check, held_out_tasks, is_held_out, raw_prompt, recognize,
                                sample_task, wrong_output)


def _docs(n, kind=None, seed=0, **settings):
    mix = CorpusMix(**{k: float(k == kind) for k in ("answered", "task_list", "graded")}) \
        if kind else CorpusMix()
    return list(corpus_documents(n, seed, CorpusSettings(mix=mix, **settings)))


def _split_joined_task(task: str) -> tuple[str, str]:
    """Undo build_assessment_prompt's "instruction input" join: the one split check() knows."""
    candidates = [(task, "")] + [(task[:i], task[i + 1:]) for i, c in enumerate(task) if c == " "]
    known = [c for c in candidates if recognize(*c) is not None]
    assert len(known) == 1, task
    return known[0]


def _graded_fields(text: str) -> tuple[str, str, str, str, str]:
    prompt, judgement = split_graded_document(text)
    task = prompt.split("\nInstruction: ", 1)[1].split("\nResponse: ", 1)[0]
    response = prompt.split("\nResponse: ", 1)[1].split("\n\n", 1)[0]
    instruction, task_input = _split_joined_task(task)
    kind = "quality" if "Rate the quality" in prompt else "following"
    assert prompt == build_assessment_prompt(kind, instruction, task_input, response)
    return kind, instruction, task_input, response, judgement


def test_mix_counts_are_exact_and_sum_to_n():
    counts = CorpusMix().counts(1001)
    assert sum(counts.values()) == 1001
    assert counts == {"answered": 601, "task_list": 200, "graded": 200}
    assert CorpusMix(answered=1, task_list=0, graded=1).counts(5) in (
        {"answered": 3, "task_list": 0, "graded": 2}, {"answered": 2, "task_list": 0, "graded": 3})
    with pytest.raises(ValueError, match="shares"):
        CorpusMix(answered=0, task_list=0, graded=0).counts(3)


def test_answered_documents_are_raw_format_with_the_set_share_of_wrong_answers():
    docs = _docs(3000, "answered", wrong_rate=0.3)
    verdicts = []
    for doc in docs:
        instruction, task_input, output = parse_answered_document(doc["text"])
        assert doc["text"] == raw_prompt(instruction, task_input) + output
        assert "<|" not in doc["text"]            # the trainer appends the end-of-text token
        verdicts.append(check(instruction, task_input, output))
    assert None not in verdicts
    wrong_share = verdicts.count(False) / len(verdicts)
    assert abs(wrong_share - 0.3) < 0.035, wrong_share   # sd of the share is ~0.008
    assert all(check(*parse_answered_document(d["text"])) for d in _docs(300, "answered",
                                                                         wrong_rate=0.0))


def test_task_list_documents_parse_back_into_world_tasks():
    for doc in _docs(150, "task_list"):
        prompt, continuation = split_task_list_document(doc["text"])
        assert prompt.startswith(meta_prompt_header()) and prompt.endswith("###\n6. Instruction:")
        body = prompt.split("List of 20 tasks:\n\n", 1)[1]
        assert body.startswith("###\n1. Instruction:")
        shown = parse_generated_tasks(body[len("###\n1. Instruction:"):], num_prompt_tasks=0)
        new = parse_generated_tasks(continuation, num_prompt_tasks=5)
        assert [t.number for t in shown] == [1, 2, 3, 4, 5]
        assert [t.number for t in new] == list(range(6, 6 + len(new))) and 1 <= len(new) <= 5
        for task in shown + new:
            assert task.output == ""
            assert recognize(task.instruction, task.input) is not None, task


def test_task_list_prompt_is_what_the_loop_builds_from_world_seeds():
    # The loop's meta-prompt over the world's seed file has exactly the layout the corpus
    # documents show: same header, same block shape, same cue.
    seeds = seed_tasks_for_world(20, seed=0)
    loop_prompt = build_meta_prompt(seeds, random.Random(0))
    doc_prompt, _ = split_task_list_document(_docs(1, "task_list")[0]["text"])
    head = "List of 20 tasks:\n\n"
    assert loop_prompt.split(head)[0] == doc_prompt.split(head)[0]

    def shape(prompt):
        lines = prompt.split(head)[1].split("\n")
        return [line.split(":")[0].lstrip("0123456789") for line in lines
                if "Instruction:" in line or "Input:" in line]

    assert shape(loop_prompt) == shape(doc_prompt)


def test_graded_scores_parse_and_agree_with_correctness_at_the_noise_rate():
    docs = _docs(2400, "graded", judge_noise=0.1)
    agree = {True: [], False: []}
    kinds = []
    for doc in docs:
        kind, instruction, task_input, response, judgement = _graded_fields(doc["text"])
        score = parse_score(judgement)
        assert score == parse_score(judgement, rule="strict")
        assert score in (1, 2, 3, 4, 9, 10)
        assert "||" in judgement and judgement.split("||", 1)[1].strip()
        correct = check(instruction, task_input, response)
        assert correct is not None
        agree[correct].append((score > 8) == correct)
        kinds.append(kind)
    assert set(kinds) == set(ASSESSMENT_KINDS) and 0.4 < kinds.count("quality") / len(kinds) < 0.6
    assert 0.4 < len(agree[True]) / len(docs) < 0.6                # graded_wrong_share 0.5
    for verdicts in agree.values():                              # sd of each rate ~0.009
        assert abs(sum(verdicts) / len(verdicts) - 0.9) < 0.04


def _change_case_wrong_answers_about_other_words(docs) -> float:
    """Among graded wrong responses to change-case tasks, the share naming other words: a
    near miss (wrong_output) keeps the task's words in the wrong case, an off-task answer
    is the right answer to another task."""
    other = []
    for doc in docs:
        _, instruction, task_input, response, _ = _graded_fields(doc["text"])
        found = recognize(instruction, task_input)
        if found.family.name == "change_case" and not check(instruction, task_input, response):
            text = found.values["text"]
            other.append(response.lower().split() != text.lower().split())
    assert len(other) > 30
    return sum(other) / len(other)


def test_off_task_share_of_graded_wrong_responses_answers_another_task():
    assert _change_case_wrong_answers_about_other_words(_docs(1500, "graded")) == 0.0
    share = _change_case_wrong_answers_about_other_words(
        _docs(1500, "graded", graded_off_task_share=0.5))
    assert 0.3 < share < 0.7
    # the setting's default leaves the corpus (and the shipped model's recipe) as it was
    assert _docs(200, None) == _docs(200, None, graded_off_task_share=0.0)


def test_answer_loss_only_writes_records_with_loss_on_the_answer():
    plain = _docs(300, None)
    split = _docs(300, None, answer_loss_only=True)
    assert [d["kind"] for d in plain] == [d["kind"] for d in split]
    for a, b in zip(plain, split):
        if a["kind"] == "graded":
            assert set(b) == {"prompt", "completion", "kind"}
            assert (b["prompt"], b["completion"]) == split_graded_document(a["text"])
        elif a["kind"] == "answered":
            assert set(b) == {"instruction", "input", "output", "kind"}
            assert raw_prompt(b["instruction"], b["input"]) + b["output"] == a["text"]
        else:
            assert a == b


def test_own_answer_graded_documents_balance_right_and_wrong_by_the_checker():
    rng = random.Random(0)
    tasks = [sample_task(rng) for _ in range(40)]
    answers = [(t, t.output if i % 4 == 0 else wrong_output(t, rng), i % 4 == 0)
               for i, t in enumerate(tasks)]
    natural = own_answer_graded_documents(answers, random.Random(1), judge_noise=0.0)
    assert len(natural) == 40
    assert sum(parse_score(d["completion"]) > 8 for d in natural) == 10   # the model's own rate
    docs = own_answer_graded_documents(answers, random.Random(1), judge_noise=0.0, balance=True)
    assert len(docs) == 2 * 30
    graded = [_graded_fields(d["prompt"] + d["completion"]) for d in docs]
    verdicts = [check(i, x, r) for _, i, x, r, _ in graded]
    assert verdicts.count(True) == verdicts.count(False) == 30
    assert all((parse_score(j) > 8) == v for (_, _, _, _, j), v in zip(graded, verdicts))
    wrong_given = {(t.instruction, t.input, r) for t, r, ok in answers if not ok}
    assert {(i, x, r) for (_, i, x, r, _), v in zip(graded, verdicts) if not v} == wrong_given


def test_no_document_holds_a_held_out_pair():
    held = {(t.instruction, t.input) for t in held_out_tasks(50, seed=0)}
    pairs = []
    for doc in _docs(1500, seed=3):
        if doc["kind"] == "answered":
            pairs.append(parse_answered_document(doc["text"])[:2])
        elif doc["kind"] == "task_list":
            prompt, continuation = split_task_list_document(doc["text"])
            for task in parse_generated_tasks(continuation):
                pairs.append((task.instruction, task.input))
        else:
            pairs.append(_graded_fields(doc["text"])[1:3])
    assert len(pairs) > 1500
    assert not held & set(pairs)
    assert not any(is_held_out(*p) for p in pairs)


def test_write_corpus_is_jsonl_of_text_documents_and_deterministic(tmp_path):
    counts = write_corpus(tmp_path / "a.jsonl", 200, seed=4)
    write_corpus(tmp_path / "b.jsonl", 200, seed=4)
    write_corpus(tmp_path / "c.jsonl", 200, seed=5)
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    lines = [json.loads(line) for line in a.decode().splitlines()]
    assert counts == {"answered": 120, "task_list": 40, "graded": 40}
    assert all(isinstance(d["text"], str) and d["text"] for d in lines) and len(lines) == 200
    assert not list(tmp_path.glob("*.tmp"))


def test_task_list_documents_fit_the_context_with_the_world_tokenizer():
    tok = world_tokenizer(vocab_size=1500, n_docs=800, seed=1)
    docs = list(corpus_documents(400, seed=2, tokenizer=tok))
    lengths = {d["kind"]: [] for d in docs}
    for d in docs:
        lengths[d["kind"]].append(len(tok.encode(d["text"], add_special_tokens=False).ids) + 1)
    assert max(lengths["task_list"]) <= 512
    assert max(lengths["graded"]) <= 200 and max(lengths["answered"]) <= 64
    # the budget cuts lists short rather than dropping them: some stay long
    assert max(lengths["task_list"]) > 440


def test_settings_are_validated():
    with pytest.raises(ValueError, match="wrong_rate"):
        CorpusSettings(wrong_rate=1.5)
    with pytest.raises(ValueError, match="list_extra"):
        CorpusSettings(list_extra=(3, 1))


def test_seed_file_reads_back_as_world_tasks_covering_every_family(tmp_path):
    path = write_seed_file(tmp_path / "seeds.jsonl", n=27, seed=0)
    seeds = read_seed_tasks(path)
    assert seeds == seed_tasks_for_world(27, seed=0)
    assert len({(s.instruction, s.input) for s in seeds}) == 27
    families = {recognize(s.instruction, s.input).family.name for s in seeds}
    assert families == set(FAMILIES)
    assert all(check(s.instruction, s.input, s.output) for s in seeds)
    assert not any(is_held_out(s.instruction, s.input) for s in seeds)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"id", "name", "instruction", "instances", "is_classification"}
