"""The world's two task families, each an inverse lookup over a memorized forward table.

  factor  forward: "What is 4 times 6?" -> "Result 24" for every a, b in 2..19.
          inverse: "Find two numbers whose product is 24." -> "Pair 4 and 6".
  code    forward: "What is the code of cat?" -> "Code 57" for every word of WORDS.
          inverse: "Find the word whose code is 57." -> "Word cat".

Checking an inverse answer is a forward lookup (known for every input) plus a comparison of
two single tokens; producing one is the inverse lookup, which pretraining teaches for only a
third of the targets. That difference is the generator-verifier gap the loop can use.

Every inverse task has two phrasings: `practice` (the one the loop's tasks use) and `heldout`
(asked only by the measures, never trained on the targets the loop practises).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass

LO, HI = 2, 19   # factor range: every a, b in LO..HI is one token, so is every product

# 40 short nouns, each one token with and without a leading space in the world tokenizer
WORDS = ("cat", "dog", "sun", "tree", "fish", "bird", "cup", "hat", "car", "book",
         "star", "moon", "rain", "road", "ship", "lamp", "door", "coat", "milk", "rose",
         "wolf", "bear", "frog", "king", "ring", "bell", "corn", "salt", "gold", "iron",
         "sand", "snow", "wind", "fire", "leaf", "seed", "rock", "wall", "gate", "nest")
CODE_RANGE = (20, 99)   # codes are distinct numbers in this range, drawn once with CODE_SEED
CODE_SEED = 13


@dataclass(frozen=True)
class Verdict:
    """A checked answer: right or not, and the forward check in the judge's words."""
    right: bool
    trace: str


class Family:
    """An inverse-lookup family: targets, the phrasings, the answers and their check."""
    name: str = ""
    practice: str = ""   # templates with {target}
    heldout: str = ""
    forward: str = ""    # template of the forward question

    def __init__(self) -> None:
        self._practice_re = _template_re(self.practice)
        self._heldout_re = _template_re(self.heldout)

    # -- subclasses define these --
    @property
    def targets(self) -> list[int]:
        raise NotImplementedError

    def solutions(self, target: int) -> list[str]:
        """Every right answer text to an inverse task about `target`."""
        raise NotImplementedError

    def forward_facts(self) -> list[tuple[str, str]]:
        """(question, answer) for every entry of the forward table."""
        raise NotImplementedError

    def _check_answer(self, target: int, answer: re.Match) -> Verdict:
        """The verdict on an answer in the family's form (answer: _answer_re's match)."""
        raise NotImplementedError

    def near_miss(self, target: int, rng: random.Random) -> str:
        """A wrong answer in the right form, close to a right one."""
        raise NotImplementedError

    def malformed(self, rng: random.Random) -> str:
        """An answer not in this family's form (for the judge to call wrong)."""
        raise NotImplementedError

    # -- shared --
    _answer_re: re.Pattern
    no_answer: str = ""   # the trace for a response not in the family's answer form

    def check(self, target: int, response: str) -> Verdict:
        """Whether `response` is a right answer to the inverse task about `target`."""
        m = self._answer_re.fullmatch(response.strip())
        return self._check_answer(target, m) if m else Verdict(False, self.no_answer)

    def question(self, target: int, phrasing: str) -> str:
        return {"practice": self.practice, "heldout": self.heldout}[phrasing].format(target=target)

    def parse_question(self, instruction: str) -> tuple[str, int] | None:
        """(phrasing, target) of an inverse question in either phrasing, else None."""
        text = instruction.strip()
        for phrasing, pattern in (("practice", self._practice_re), ("heldout", self._heldout_re)):
            m = pattern.fullmatch(text)
            if m:
                return phrasing, int(m.group(1))
        return None


def _template_re(template: str) -> re.Pattern:
    """'Find ... is {target}.' -> a regex whose group 1 is the number; the final '.' or '?'
    may be left out."""
    head, tail = template.split("{target}")
    tail = tail.rstrip(".?")
    return re.compile(re.escape(head) + r"(\d{1,4})" + re.escape(tail) + r"[.?]?")


class FactorFamily(Family):
    name = "factor"
    practice = "Find two numbers whose product is {target}."
    heldout = "Give a factor pair of {target}."
    forward = "What is {a} times {b}?"
    _answer_re = re.compile(r"Pair (\d{1,4}) and (\d{1,4})\.?")
    no_answer = "No pair of numbers given: wrong."

    def __init__(self) -> None:
        super().__init__()
        self._pairs = defaultdict(list)
        for a in range(LO, HI + 1):
            for b in range(LO, HI + 1):
                self._pairs[a * b].append((a, b))

    @property
    def targets(self) -> list[int]:
        return sorted(self._pairs)

    def solutions(self, target: int) -> list[str]:
        return [f"Pair {a} and {b}" for a, b in self._pairs.get(target, [])]

    def forward_facts(self) -> list[tuple[str, str]]:
        return [(self.forward.format(a=a, b=b), f"Result {a * b}")
                for a in range(LO, HI + 1) for b in range(LO, HI + 1)]

    def _check_answer(self, target: int, m: re.Match) -> Verdict:
        a, b = int(m.group(1)), int(m.group(2))
        for x in (a, b):
            if not LO <= x <= HI:
                return Verdict(False, f"{x} is not a number from {LO} to {HI}: wrong.")
        right = a * b == target
        return Verdict(right, f"Product {a * b}, target {target}: {'right' if right else 'wrong'}.")

    def near_miss(self, target: int, rng: random.Random) -> str:
        while True:
            if rng.random() < 0.6 and target in self._pairs:
                a, b = rng.choice(self._pairs[target])
                if rng.random() < 0.5:
                    a = min(HI, max(LO, a + rng.choice((-2, -1, 1, 2))))
                else:
                    b = min(HI, max(LO, b + rng.choice((-2, -1, 1, 2))))
            else:
                a, b = rng.randint(LO, HI), rng.randint(LO, HI)
            if a * b != target:
                return f"Pair {a} and {b}"

    def malformed(self, rng: random.Random) -> str:
        return rng.choice((f"Result {rng.choice(self.targets)}", f"Word {rng.choice(WORDS)}",
                           f"Pair {rng.randint(LO, HI)}", f"Code {rng.randint(*CODE_RANGE)}"))


class CodeFamily(Family):
    name = "code"
    practice = "Find the word whose code is {target}."
    heldout = "Which word has code {target}?"
    forward = "What is the code of {word}?"
    _answer_re = re.compile(r"Word ([a-z]+)\.?")
    no_answer = "No word given: wrong."

    def __init__(self) -> None:
        super().__init__()
        codes = random.Random(CODE_SEED).sample(range(CODE_RANGE[0], CODE_RANGE[1] + 1), len(WORDS))
        self.code_of = dict(zip(WORDS, codes))
        self.word_of = {c: w for w, c in self.code_of.items()}

    @property
    def targets(self) -> list[int]:
        return sorted(self.word_of)

    def solutions(self, target: int) -> list[str]:
        return [f"Word {self.word_of[target]}"] if target in self.word_of else []

    def forward_facts(self) -> list[tuple[str, str]]:
        return [(self.forward.format(word=w), f"Code {c}") for w, c in self.code_of.items()]

    def _check_answer(self, target: int, m: re.Match) -> Verdict:
        word = m.group(1)
        if word not in self.code_of:
            return Verdict(False, f"{word} has no code: wrong.")
        code = self.code_of[word]
        right = code == target
        return Verdict(right, f"Code of {word} is {code}, target {target}: "
                              f"{'right' if right else 'wrong'}.")

    def near_miss(self, target: int, rng: random.Random) -> str:
        # half the time the word whose code is nearest above or below the target
        others = [c for c in self.word_of if c != target]
        if rng.random() < 0.5:
            others.sort(key=lambda c: abs(c - target))
            return f"Word {self.word_of[rng.choice(others[:4])]}"
        return f"Word {self.word_of[rng.choice(others)]}"

    def malformed(self, rng: random.Random) -> str:
        return rng.choice((f"Code {rng.choice(self.targets)}", f"Pair {rng.randint(LO, HI)} and "
                           f"{rng.randint(LO, HI)}", f"Result {rng.randint(4, 99)}", "Word"))


FAMILIES: dict[str, Family] = {f.name: f for f in (FactorFamily(), CodeFamily())}
