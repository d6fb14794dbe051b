"""The world's pretraining corpus, in exactly the text formats the loop sends to the model.

Three kinds of document, each a plain string (the trainer appends one end-of-text token to
every document; no document contains a special token):

  answered   raw_prompt(instruction, input) + output, the base-model format of the loop's
             response stage; a `wrong_rate` share of the outputs are plausible wrong
             answers, so the pretrained model is a mediocre solver.
  task_list  build_meta_prompt(seeds, rng) over world tasks, then more numbered blocks as
             format_example_block lays them out: the loop's synthesis prompt and the
             continuation parse_generated_tasks reads back.
  graded     build_assessment_prompt(kind, instruction, input, response) + "<score>||<why>",
             quality and following alike: 9 or 10 for a right answer, 1..4 for a wrong one,
             with the verdict flipped for a `judge_noise` share, so the judge is imperfect.

With `answer_loss_only`, answered documents are written as Alpaca records ({"instruction",
"input", "output"}: the trainer's raw format, the same text, loss on the output) and graded
ones as {"prompt", "completion"} records (loss on the judgement alone): in a plain graded
document the one score token is ~1/170 of its loss, and answered documents hold most of the
loss tokens of a mixed batch.

`own_answer_graded_documents` grades a model's own sampled answers instead of generated
wrong ones, for a judge stage that continues pretraining (recipes/world_pretrain.py
--own-answers).

Only training-side tasks appear (tasks.is_held_out is False for every pair in the corpus).

    write_corpus("world.jsonl", n_docs=200_000, seed=0)   # {"text": ..., "kind": ...} lines
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from engine.selfalign.assessment_prompts import (ASSESSMENT_KINDS, SCORE_CUE,
                                                  build_assessment_prompt)
from engine.selfalign.seeds import SeedTask
from engine.selfalign.synthesis import build_meta_prompt, format_example_block
from engine.world.tasks import WorldTask, off_task_output, sample_task, wrong_output

DOC_KINDS = ("answered", "task_list", "graded")
CONTEXT = 512  # tokens a document may take, end-of-text included, when a tokenizer is given


@dataclass
class CorpusMix:
    """Share of each document kind; normalized, so only the ratios matter."""
    answered: float = 0.6
    task_list: float = 0.2
    graded: float = 0.2

    def counts(self, n_docs: int) -> dict[str, int]:
        """Exact document counts summing to n_docs (largest remainder)."""
        shares = {f.name: float(getattr(self, f.name)) for f in fields(self)}
        if any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
            raise ValueError(f"CorpusMix shares must be >= 0 and not all 0, got {shares}")
        total = sum(shares.values())
        exact = {k: n_docs * v / total for k, v in shares.items()}
        counts = {k: int(x) for k, x in exact.items()}
        by_remainder = sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)
        for k in by_remainder[:n_docs - sum(counts.values())]:
            counts[k] += 1
        return counts


@dataclass
class CorpusSettings:
    mix: CorpusMix = field(default_factory=CorpusMix)
    wrong_rate: float = 0.3          # answered documents with a wrong output
    judge_noise: float = 0.1         # graded documents whose verdict is flipped
    graded_wrong_share: float = 0.5  # graded documents that grade a wrong response
    graded_off_task_share: float = 0.0  # of those, answers to another task (off_task_output)
    list_examples: int = 5           # blocks in the meta-prompt (the loop's tasks_per_meta_prompt)
    list_extra: tuple[int, int] = (1, 5)  # how many more blocks follow, inclusive range
    max_tokens: int = CONTEXT        # task-list budget, applied when a tokenizer is given
    answer_loss_only: bool = False   # answered / graded documents as records with loss on
                                     # the output / the judgement only

    def __post_init__(self):
        for name in ("wrong_rate", "judge_noise", "graded_wrong_share", "graded_off_task_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CorpusSettings.{name} must lie in [0, 1], got {value}")
        if self.list_examples < 1:
            raise ValueError(f"CorpusSettings.list_examples must be >= 1, got {self.list_examples}")
        low, high = self.list_extra
        if not 1 <= low <= high:
            raise ValueError(f"CorpusSettings.list_extra must be (low, high) with "
                             f"1 <= low <= high, got {self.list_extra}")


# ---- one document of each kind ---------------------------------------------------------

def answered_document(task: WorldTask, output: str) -> str:
    return task.prompt + output


def parse_answered_document(text: str) -> tuple[str, str, str]:
    """(instruction, input, output) of an answered document (all world fields are one line)."""
    lines = text.split("\n")
    if len(lines) == 2:
        return lines[0], "", lines[1]
    if len(lines) == 3:
        return lines[0], lines[1], lines[2]
    raise ValueError(f"not an answered world document: {text!r}")


def as_seed(task: WorldTask, seed_id: str) -> SeedTask:
    return SeedTask(instruction=task.instruction, input=task.input, output=task.output,
                    id=seed_id)


def task_list_document(rng: random.Random, num_examples: int = 5,
                       extra: tuple[int, int] = (1, 5),
                       count_tokens: Callable[[str], int] | None = None,
                       max_tokens: int = CONTEXT) -> str:
    """A meta-prompt over `num_examples` world tasks, continued with 1..5 more numbered blocks.

    With `count_tokens`, blocks are added only while the document plus the end-of-text token
    fits `max_tokens` (at least one block must fit, else the shown tasks are drawn again).
    Every block starts with "###" right after a newline, where the tokenizer's pre-split
    cuts, so the document's token count is the sum of its pieces' counts.
    """
    cue = f"###\n{num_examples + 1}. Instruction:"
    for _ in range(100):
        shown = [as_seed(sample_task(rng), f"shown_{k}") for k in range(num_examples)]
        prompt = build_meta_prompt(shown, rng, num_examples=num_examples)
        assert prompt.endswith(cue), "build_meta_prompt changed its ending"
        text = prompt[:-len(cue)]
        used = count_tokens(text) + 1 if count_tokens else 0
        wanted, added = rng.randint(*extra), 0
        while added < wanted:
            block = format_example_block(num_examples + 1 + added,
                                         as_seed(sample_task(rng), f"new_{added}"))
            if count_tokens:
                size = count_tokens(block)
                if used + size > max_tokens:
                    break
                used += size
            text += block
            added += 1
        if added:
            return text
    raise ValueError(f"task-list documents with {num_examples} shown tasks do not fit "
                     f"{max_tokens} tokens; show fewer tasks or raise max_tokens")


def split_task_list_document(text: str, num_examples: int = 5) -> tuple[str, str]:
    """(meta-prompt, continuation): the prompt the loop sends and what the model should write."""
    cue = f"###\n{num_examples + 1}. Instruction:"
    cut = text.index(cue) + len(cue)
    return text[:cut], text[cut:]


_EXPLANATIONS = {
    ("quality", True): ("The answer is correct and concise.", "Correct, clear and short.",
                        "The response gives the right answer with nothing extra."),
    ("quality", False): ("The answer is wrong.", "The result is incorrect.",
                         "The response gives a wrong answer."),
    ("following", True): ("It answers the instruction directly.",
                          "The response does exactly what the instruction asks.",
                          "It follows the instruction and its format."),
    ("following", False): ("It does not give what the instruction asks for.",
                           "The response does not do what was asked.",
                           "It misses the point of the instruction."),
}


def graded_judgement(kind: str, correct: bool, rng: random.Random, judge_noise: float) -> str:
    """"<score>||<explanation>": 9..10 when the verdict is "right", 1..4 when "wrong"; the
    verdict is the truth except for a judge_noise share, where it is flipped."""
    verdict = correct if rng.random() >= judge_noise else not correct
    score = rng.randint(9, 10) if verdict else rng.randint(1, 4)
    return f"{score}||{rng.choice(_EXPLANATIONS[(kind, verdict)])}"


def graded_document(rng: random.Random, settings: CorpusSettings) -> str:
    task = sample_task(rng)
    correct = rng.random() >= settings.graded_wrong_share
    if correct:
        response = task.output
    elif settings.graded_off_task_share and rng.random() < settings.graded_off_task_share:
        response = off_task_output(task, rng)
    else:
        response = wrong_output(task, rng)
    kind = rng.choice(ASSESSMENT_KINDS)
    prompt = build_assessment_prompt(kind, task.instruction, task.input, response)
    return prompt + graded_judgement(kind, correct, rng, settings.judge_noise)


def split_graded_document(text: str) -> tuple[str, str]:
    """(assessment prompt, judgement) of a graded document."""
    cut = text.rindex(SCORE_CUE) + len(SCORE_CUE)
    return text[:cut], text[cut:]


def own_answer_graded_documents(answers: list[tuple[WorldTask, str, bool]], rng: random.Random,
                                judge_noise: float = 0.1, balance: bool = False) -> list[dict]:
    """Graded documents over a model's own answers, as {"prompt", "completion", "kind"}.

    answers: (task, response, right) triples, e.g. model_measures.sample_answers. Each answer
    is graded once, so the judge sees right and wrong answers at the model's own rates, per
    family too. With balance, as many right answers as wrong ones are graded: the model's own
    first, then the true outputs of tasks it got wrong (this hides from the judge how often
    the model is right on each family). Verdicts follow the checker, flipped for a
    judge_noise share; kinds are drawn at random. The order is shuffled.
    """
    wrong = [(t, r) for t, r, ok in answers if not ok]
    right = [(t, r) for t, r, ok in answers if ok]
    if balance:
        right = right[:len(wrong)] + [(t, t.output) for t, _ in wrong[:max(0, len(wrong) - len(right))]]
    docs = []
    for (task, response), correct in [(w, False) for w in wrong] + [(r, True) for r in right]:
        kind = rng.choice(ASSESSMENT_KINDS)
        docs.append({"prompt": build_assessment_prompt(kind, task.instruction, task.input, response),
                     "completion": graded_judgement(kind, correct, rng, judge_noise),
                     "kind": "graded"})
    rng.shuffle(docs)
    return docs


# ---- the corpus ------------------------------------------------------------------------

def token_counter(tokenizer) -> Callable[[str], int]:
    """Text -> token count (no special tokens added) for an engine Tokenizer, a `tokenizers`
    Tokenizer, or a directory holding tokenizer.json."""
    if isinstance(tokenizer, (str, os.PathLike)):
        from engine.tokenizer import Tokenizer
        tokenizer = Tokenizer.from_pretrained(tokenizer)
    from tokenizers import Tokenizer as HFTokenizer
    if isinstance(tokenizer, HFTokenizer):
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def corpus_documents(n_docs: int, seed: int = 0, settings: CorpusSettings | None = None,
                     tokenizer=None) -> Iterator[dict]:
    """n_docs documents {"text": str, "kind": str}, kinds shuffled, deterministic by seed
    (with settings.answer_loss_only, answered ones {"instruction", "input", "output", "kind"}
    and graded ones {"prompt", "completion", "kind"}).

    tokenizer: optional (see token_counter); with it every task-list document fits
    settings.max_tokens including the end-of-text token. Answered and graded documents are
    far shorter (under 40 and 170 tokens with the world tokenizer).
    """
    settings = settings or CorpusSettings()
    count_tokens = token_counter(tokenizer) if tokenizer is not None else None
    rng = random.Random(f"world-corpus-{seed}")
    kinds = [k for k, n in settings.mix.counts(n_docs).items() for _ in range(n)]
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "answered":
            task = sample_task(rng)
            wrong = rng.random() < settings.wrong_rate
            output = wrong_output(task, rng) if wrong else task.output
            if settings.answer_loss_only:
                yield {"instruction": task.instruction, "input": task.input, "output": output,
                       "kind": kind}
                continue
            text = answered_document(task, output)
        elif kind == "task_list":
            text = task_list_document(rng, settings.list_examples, settings.list_extra,
                                      count_tokens, settings.max_tokens)
        else:
            text = graded_document(rng, settings)
            if settings.answer_loss_only:
                prompt, judgement = split_graded_document(text)
                yield {"prompt": prompt, "completion": judgement, "kind": kind}
                continue
        yield {"text": text, "kind": kind}


def write_corpus(out_path: str | os.PathLike, n_docs: int, seed: int = 0,
                 mix: CorpusMix | None = None, wrong_rate: float = 0.3,
                 judge_noise: float = 0.1, settings: CorpusSettings | None = None,
                 tokenizer=None) -> dict:
    """Write n_docs documents as JSONL ({"text", "kind"} a line); returns counts by kind.

    `settings` overrides mix / wrong_rate / judge_noise when given. Pass the base model's
    tokenizer (its directory) so that task-list documents fit the context. The file is
    written under a temporary name and renamed when complete.
    """
    if settings is None:
        settings = CorpusSettings(mix=mix or CorpusMix(), wrong_rate=wrong_rate,
                                  judge_noise=judge_noise)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    counts: Counter = Counter()
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in corpus_documents(n_docs, seed, settings, tokenizer):
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            counts[doc["kind"]] += 1
    os.replace(tmp, out)
    return {kind: counts[kind] for kind in DOC_KINDS}
