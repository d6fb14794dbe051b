"""The pretraining corpus, every document in a format the loop itself sends to the model.

Each document is a {"prompt", "completion", "kind"} record (the trainer puts the loss on the
completion and its end-of-text token only):

  forward    format_raw_prompt("What is 4 times 6?") -> "Result 24": the forward table,
             every entry of both families.
  inverse    format_raw_prompt("Find two numbers whose product is 24.") -> "Pair 4 and 6",
             for taught targets only, in both phrasings.
  judged     build_assessment_prompt(kind, instruction, "", response, "explain_first") ->
             " Product 28, target 24: wrong.\\nScore: 1": the explain-then-score judgement
             with the forward check as its reasoning, over every target and both phrasings;
             the response is a right answer, a near miss, or not in the asked form. Right
             gets 10, wrong 1 (the loop's 1..10 scale).
  check      the same judgement after a short prompt, "Instruction: ...\nResponse: ...\n
             Check:" (no rating text): a cheap way to teach the check itself, which the
             judged documents then only need to place after the loop's long prompt.
  task_list  build_meta_prompt(shown seeds) -> more numbered blocks of practice-phrasing
             tasks over taught and practised targets: what synthesis asks and reads back.

Kept-out targets appear only in forward facts and judged documents.

    write_corpus("corpus.jsonl", CorpusSettings(n_docs=60_000), seed=0)
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.selfalign.assessment_prompts import EXPLAIN_CUE, SCORE_LINE, build_assessment_prompt
from engine.selfalign.seeds import SeedTask
from engine.selfalign.synthesis import build_meta_prompt, format_example_block
from engine.prompt_format import raw_prompt as format_raw_prompt
from engine.world.families import FAMILIES
from engine.world.seeds import seed_tasks
from engine.world.tasks import WorldTask, targets_in

DOC_KINDS = ("forward", "inverse", "check", "judged", "task_list")
RIGHT_SCORE, WRONG_SCORE = 10, 1
FAMILY_WEIGHTS = {"factor": 0.6, "code": 0.4}   # of synthesized tasks and judged documents


@dataclass
class CorpusSettings:
    n_docs: int = 48_000
    forward: float = 0.38           # shares of the documents by kind
    inverse: float = 0.17
    check: float = 0.27
    judged: float = 0.1675
    task_list: float = 0.0125
    judged_right: float = 0.5       # of judged documents: a right response
    judged_malformed: float = 0.08  # of judged documents: a response not in the asked form
    judge_kinds: tuple[str, ...] = ("quality",)   # the loop's assessment level
    list_examples: int = 5          # the loop's synthesis.tasks_per_meta_prompt
    list_new: tuple[int, int] = (4, 10)   # how many new blocks a task list continues with

    def counts(self) -> dict[str, int]:
        shares = {k: getattr(self, k) for k in DOC_KINDS}
        if any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
            raise ValueError(f"CorpusSettings shares must be >= 0 and not all 0, got {shares}")
        total = sum(shares.values())
        counts = {k: int(self.n_docs * v / total) for k, v in shares.items()}
        counts["forward"] += self.n_docs - sum(counts.values())
        return counts


def judgement(task: WorldTask, response: str) -> str:
    """What the judge writes after "Check:": the forward check, then "Score: <n>"."""
    verdict = FAMILIES[task.family].check(task.target, response)
    return f" {verdict.trace}\n{SCORE_LINE} {RIGHT_SCORE if verdict.right else WRONG_SCORE}"


def judged_document(task: WorldTask, response: str, kind: str = "quality") -> dict:
    """The loop's judge prompt over (task, response) and its explain-then-score judgement."""
    return {"prompt": build_assessment_prompt(kind, task.instruction, "", response,
                                              judge_format="explain_first"),
            "completion": judgement(task, response), "kind": "judged"}


def check_document(task: WorldTask, response: str) -> dict:
    return {"prompt": f"Instruction: {task.instruction}\nResponse: {response}\n{EXPLAIN_CUE}",
            "completion": judgement(task, response), "kind": "check"}


def task_list_document(rng: random.Random, seeds: list[SeedTask], practice_pool: dict,
                       settings: CorpusSettings) -> dict:
    """A meta-prompt over seeds, continued by new practice tasks (taught or practised)."""
    prompt = build_meta_prompt(seeds, rng, num_examples=settings.list_examples)
    first = settings.list_examples + 1
    blocks = []
    for k in range(rng.randint(*settings.list_new)):
        family = _pick_family(rng)
        task = WorldTask(family, rng.choice(practice_pool[family]))
        blocks.append(format_example_block(first + k, SeedTask(task.instruction, "", "", "new")))
    text = "".join(blocks)
    # the meta-prompt ends with block `first`'s "Instruction:"; go on from there
    head = f"###\n{first}. Instruction:"
    assert text.startswith(head) and prompt.endswith(head)
    return {"prompt": prompt, "completion": text[len(head):], "kind": "task_list"}


def _pick_family(rng: random.Random) -> str:
    return rng.choices(list(FAMILY_WEIGHTS), weights=list(FAMILY_WEIGHTS.values()))[0]


def corpus_documents(settings: CorpusSettings, seed: int = 0) -> Iterator[dict]:
    """settings.n_docs documents, kinds shuffled, deterministic by seed."""
    rng = random.Random(f"world-corpus-{seed}")
    forward = [fact for fam in FAMILIES.values() for fact in fam.forward_facts()]
    taught = targets_in("taught")
    every = {f: FAMILIES[f].targets for f in FAMILIES}
    practice_pool = {f: [t for _, t in targets_in("taught", f) + targets_in("practised", f)]
                     for f in FAMILIES}
    seeds = seed_tasks()
    kinds = [k for k, n in settings.counts().items() for _ in range(n)]
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "forward":
            question, answer = rng.choice(forward)
            yield {"prompt": format_raw_prompt(question), "completion": answer, "kind": kind}
        elif kind == "inverse":
            family, target = rng.choice(taught)
            task = WorldTask(family, target, rng.choice(("practice", "heldout")))
            yield {"prompt": format_raw_prompt(task.instruction),
                   "completion": task.output(rng.randrange(64)), "kind": kind}
        elif kind in ("check", "judged"):
            family = _pick_family(rng)
            task = WorldTask(family, rng.choice(every[family]), rng.choice(("practice", "heldout")))
            u = rng.random()
            if u < settings.judged_right:
                response = task.output(rng.randrange(64))
            elif u < settings.judged_right + settings.judged_malformed:
                response = FAMILIES[family].malformed(rng)
            else:
                response = FAMILIES[family].near_miss(task.target, rng)
            if kind == "check":
                yield check_document(task, response)
            else:
                yield judged_document(task, response, rng.choice(settings.judge_kinds))
        else:
            yield task_list_document(rng, seeds, practice_pool, settings)


def write_corpus(out_path: str | os.PathLike, settings: CorpusSettings, seed: int = 0) -> dict:
    """Write the corpus as JSONL (temporary name, renamed when complete); counts by kind."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    counts: Counter = Counter()
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in corpus_documents(settings, seed):
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            counts[doc["kind"]] += 1
    os.replace(tmp, out)
    return {kind: counts[kind] for kind in DOC_KINDS}

