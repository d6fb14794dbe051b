"""The task families of the toy world: short instructions whose answers a program derives.

Each family knows its phrasings (instruction templates with `{slot}` fields, and an input
template when the data comes in the input), how to draw slot values, the correct answer, a
plausible wrong answer, and whether a response is right. `tasks.py` turns phrasings into
regexes, so any instruction written in one of these phrasings, with any values, can be
judged, including the new ones the model writes in the loop.

Texts are kept short (a tiny model with a 512-token context learns this world), the words
come from one small vocabulary (so the world tokenizer has a token for each), and no
phrasing or word trips the loop's prompt filters (4+ words, no blacklisted word, an input
never contained in its instruction): tests/test_world_tasks.py checks that.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Concrete nouns, 3..7 letters, no palindromes; none is a substring of a phrasing that
# takes it as input (the prompt filter drops an input found inside its instruction).
WORDS = (
    "apple", "bread", "cloud", "river", "garden", "stone", "tiger", "horse", "lemon", "candle",
    "forest", "window", "pencil", "rabbit", "basket", "carpet", "silver", "orange", "planet",
    "rocket", "button", "castle", "dragon", "eagle", "flower", "guitar", "island", "jacket",
    "kettle", "ladder", "mirror", "pepper", "pillow", "pocket", "puzzle", "shadow", "spider",
    "summer", "tomato", "turtle", "wallet", "winter", "zebra", "anchor", "banana", "camera",
    "doctor", "engine", "farmer", "hammer", "insect", "jungle", "kitten", "lizard", "monkey",
    "napkin", "ocean", "parrot", "salad", "tunnel", "violin", "walnut", "bottle", "cookie",
    "desert", "feather", "goat", "ship", "frog", "lamp", "moon", "star", "boat", "rain", "snow",
    "milk", "cake", "fish", "bird", "king", "sock", "shoe", "cup", "egg", "bell", "coin",
    "door", "drum", "gold", "hill", "leaf", "nest", "rope", "sand", "tent", "wolf",
)
ADJECTIVES = ("red", "blue", "green", "small", "big", "old", "happy", "quiet", "warm", "cold",
              "dark", "bright", "tiny", "brave", "lazy", "funny")

# Slot patterns the checker accepts: wider than what the sampler draws, so a new task the
# model writes with another word or a bigger number is still judged.
NUMBER = r"\d{1,6}"
WORD = r"[A-Za-z]{2,20}"
LETTER = r"[A-Za-z]"
NUMBER_LIST = r"\d{1,6}(?:\s*,\s*\d{1,6}){1,11}"
TEXT = r"[A-Za-z]{1,20}(?: [A-Za-z]{1,20}){0,5}"
CASE = r"upper|lower"


# Words that point at data instead of being data: "Reverse the letters of the word below."
# with the input missing is a broken task, not a task about the word "below".
POINTER_WORDS = frozenset({"below", "above", "following", "given", "this", "that", "these",
                           "those", "it", "them", "next", "previous", "input", "text", "word"})


def _names_data(text: str) -> bool:
    return not any(w.lower() in POINTER_WORDS for w in text.split())


@dataclass(frozen=True)
class Phrasing:
    """One way to ask: `instruction` and `input` are templates with `{slot}` fields; an
    empty `input` means the task has no input. `fixed` holds slot values the wording itself
    implies ("in capital letters" means case=upper)."""
    instruction: str
    input: str = ""
    fixed: tuple[tuple[str, str], ...] = ()


def normalize_answer(text: str) -> str:
    """Whitespace collapsed, one trailing period dropped: "68." and " 68 " read as "68"."""
    text = " ".join(text.split())
    return text[:-1].rstrip() if text.endswith(".") else text


def _reads_as_int(response: str, value: int) -> bool:
    text = normalize_answer(response)
    return re.fullmatch(r"-?\d+", text) is not None and int(text) == value


def _near_miss_int(value: int, rng: random.Random) -> int:
    """An off-by-one, off-by-ten or digit-swapped number; never negative for a
    non-negative answer."""
    candidates = [value + 1, value - 1, value + 10, value - 10]
    digits = str(abs(value))
    if len(digits) >= 2 and digits[0] != digits[1]:
        candidates.append(int(digits[1] + digits[0] + digits[2:]) * (1 if value >= 0 else -1))
    candidates = [c for c in candidates if c != value and (value < 0 or c >= 0)]
    return rng.choice(candidates)


def _swap_two_letters(word: str, rng: random.Random) -> str:
    """The word with one pair of neighbouring, different letters swapped (word if none)."""
    spots = [i for i in range(len(word) - 1) if word[i].lower() != word[i + 1].lower()]
    if not spots:
        return word
    i = rng.choice(spots)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


class Family:
    """Base: subclasses set `name`, `phrasings`, `slots` (slot -> regex) and the methods."""
    name: str = ""
    phrasings: tuple[Phrasing, ...] = ()
    slots: dict[str, str] = {}

    def draw(self, rng: random.Random, fixed: dict) -> dict:
        """Typed slot values for a new task; `fixed` are the values its phrasing implies."""
        raise NotImplementedError

    def render(self, values: dict) -> dict[str, str]:
        """Slot values as the text that fills the templates."""
        return {k: str(v) for k, v in values.items()}

    def read(self, fields: dict[str, str]) -> dict | None:
        """Typed slot values from matched text; None when they make no answerable task."""
        raise NotImplementedError

    def answer(self, values: dict) -> str:
        raise NotImplementedError

    def wrong(self, values: dict, rng: random.Random) -> str:
        """A plausible wrong answer (the caller re-draws the rare one that is right)."""
        raise NotImplementedError

    def accepts(self, values: dict, response: str) -> bool:
        raise NotImplementedError


class Arithmetic(Family):
    """Two small non-negative integers and one operation; the answer is an integer."""

    def __init__(self, name: str, op, phrasings: tuple[Phrasing, ...], draw_pair):
        self.name, self.op, self.phrasings, self._draw_pair = name, op, phrasings, draw_pair
        self.slots = {"a": NUMBER, "b": NUMBER}

    def draw(self, rng, fixed):
        a, b = self._draw_pair(rng)
        return {"a": a, "b": b}

    def read(self, fields):
        return {"a": int(fields["a"]), "b": int(fields["b"])}

    def answer(self, values):
        return str(self.op(values["a"], values["b"]))

    def wrong(self, values, rng):
        return str(_near_miss_int(self.op(values["a"], values["b"]), rng))

    def accepts(self, values, response):
        return _reads_as_int(response, self.op(values["a"], values["b"]))


def _sum_pair(rng):
    return rng.randint(0, 99), rng.randint(0, 99)


def _difference_pair(rng):
    a = rng.randint(0, 99)
    return a, rng.randint(0, a)


def _product_pair(rng):
    return rng.randint(2, 12), rng.randint(2, 12)


ADD = Arithmetic("add", lambda a, b: a + b, (
    Phrasing("What is {a} plus {b}?"),
    Phrasing("Add {a} and {b}."),
    Phrasing("Compute the sum of {a} and {b}."),
    Phrasing("Calculate {a} + {b}."),
    Phrasing("Find the total of {a} and {b}."),
    Phrasing("Add the two numbers below.", "{a} and {b}"),
    Phrasing("What is the sum of the following two numbers?", "{a}, {b}"),
), _sum_pair)

SUBTRACT = Arithmetic("subtract", lambda a, b: a - b, (
    Phrasing("What is {a} minus {b}?"),
    Phrasing("Subtract {b} from {a}."),
    Phrasing("Calculate {a} - {b}."),
    Phrasing("Take {b} away from {a}."),
    Phrasing("What do you get when you subtract {b} from {a}?"),
    Phrasing("Subtract the second number from the first.", "{a} and {b}"),
    Phrasing("Find the first number minus the second one.", "{a}, {b}"),
), _difference_pair)

MULTIPLY = Arithmetic("multiply", lambda a, b: a * b, (
    Phrasing("What is {a} times {b}?"),
    Phrasing("Multiply {a} by {b}."),
    Phrasing("Compute the product of {a} and {b}."),
    Phrasing("Calculate {a} * {b}."),
    Phrasing("Multiply the two numbers below.", "{a} and {b}"),
    Phrasing("What is the product of the following numbers?", "{a}, {b}"),
), _product_pair)


class WordTransform(Family):
    """One word in, one rearrangement of its letters out; compared ignoring case."""

    def __init__(self, name: str, transform, phrasings: tuple[Phrasing, ...]):
        self.name, self.transform, self.phrasings = name, transform, phrasings
        self.slots = {"word": WORD}

    def draw(self, rng, fixed):
        return {"word": rng.choice(WORDS)}

    def read(self, fields):
        return {"word": fields["word"]} if _names_data(fields["word"]) else None

    def answer(self, values):
        return self.transform(values["word"].lower())

    def wrong(self, values, rng):
        right = self.answer(values)
        if rng.random() < 0.3:
            return values["word"].lower()  # copied the word unchanged
        return _swap_two_letters(right, rng)

    def accepts(self, values, response):
        return normalize_answer(response).lower() == self.answer(values)


REVERSE = WordTransform("reverse", lambda w: w[::-1], (
    Phrasing("Reverse the letters of the word {word}."),
    Phrasing("Write the word {word} backwards."),
    Phrasing("Spell the word {word} in reverse order."),
    Phrasing("What is {word} spelled backwards?"),
    Phrasing("Reverse the letters of the word below.", "{word}"),
    Phrasing("Write the following word backwards.", "{word}"),
))

SORT_LETTERS = WordTransform("sort_letters", lambda w: "".join(sorted(w)), (
    Phrasing("Sort the letters of the word {word} in alphabetical order."),
    Phrasing("Arrange the letters of {word} alphabetically."),
    Phrasing("Put the letters of the word {word} in alphabetical order."),
    Phrasing("Write the letters of {word} in alphabetical order."),
    Phrasing("Sort the letters of the word below alphabetically.", "{word}"),
    Phrasing("Rearrange the letters of the following word in alphabetical order.", "{word}"),
))


class CountLetter(Family):
    name = "count_letter"
    slots = {"letter": LETTER, "word": WORD}
    phrasings = (
        Phrasing("How many times does the letter {letter} appear in {word}?"),
        Phrasing("Count the letter {letter} in the word {word}."),
        Phrasing("In the word {word}, how often does the letter {letter} occur?"),
        Phrasing("Count how many times the letter {letter} appears in the word below.",
                 "{word}"),
        Phrasing("Give the number of times the letter {letter} occurs in the following word.",
                 "{word}"),
    )

    def draw(self, rng, fixed):
        word = rng.choice(WORDS)
        if rng.random() < 0.7:
            letter = rng.choice(word)
        else:
            letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in word])
        return {"letter": letter, "word": word}

    def read(self, fields):
        if not _names_data(fields["word"]):
            return None
        return {"letter": fields["letter"].lower(), "word": fields["word"]}

    def _count(self, values):
        return values["word"].lower().count(values["letter"])

    def answer(self, values):
        return str(self._count(values))

    def wrong(self, values, rng):
        count = self._count(values)
        return str(count + 1 if count == 0 or rng.random() < 0.5 else count - 1)

    def accepts(self, values, response):
        return _reads_as_int(response, self._count(values))


class MaxNumber(Family):
    name = "max_number"
    slots = {"numbers": NUMBER_LIST}
    phrasings = (
        Phrasing("What is the largest number in the list {numbers}?"),
        Phrasing("Find the biggest of these numbers: {numbers}."),
        Phrasing("Which number is the largest among {numbers}?"),
        Phrasing("Pick the largest number from the list below.", "{numbers}"),
        Phrasing("Return the maximum of the following numbers.", "{numbers}"),
        Phrasing("Which of the numbers below is the greatest?", "{numbers}"),
    )

    def draw(self, rng, fixed):
        return {"numbers": rng.sample(range(100), rng.randint(3, 6))}

    def render(self, values):
        return {"numbers": ", ".join(map(str, values["numbers"]))}

    def read(self, fields):
        return {"numbers": [int(x) for x in re.split(r"\s*,\s*", fields["numbers"])]}

    def answer(self, values):
        return str(max(values["numbers"]))

    def wrong(self, values, rng):
        numbers = values["numbers"]
        others = [n for n in numbers if n != max(numbers)]
        if others and rng.random() < 0.7:
            return str(max(others) if rng.random() < 0.6 else rng.choice(others))
        return str(_near_miss_int(max(numbers), rng))

    def accepts(self, values, response):
        return _reads_as_int(response, max(values["numbers"]))


def _styled(text: str, style: str) -> str:
    return {"upper": text.upper, "lower": text.lower, "title": text.title}[style]()


class ChangeCase(Family):
    """Rewrite a short text in upper or lower case; case matters, spacing does not."""
    name = "change_case"
    slots = {"text": TEXT, "case": CASE}
    phrasings = (
        Phrasing("Convert the text below to {case} case.", "{text}"),
        Phrasing("Change the following words to {case}case letters.", "{text}"),
        Phrasing("Rewrite the text below in all capital letters.", "{text}", (("case", "upper"),)),
        Phrasing("Write the following text in small letters only.", "{text}", (("case", "lower"),)),
        Phrasing("Rewrite {text} in {case} case."),
        Phrasing("Write {text} using only capital letters.", "", (("case", "upper"),)),
    )

    def draw(self, rng, fixed):
        words = [rng.choice(WORDS)]
        for _ in range(rng.randint(0, 2)):
            words.insert(0, rng.choice(ADJECTIVES))
        case = fixed.get("case") or rng.choice(("upper", "lower"))
        source = rng.choice(("lower", "title") if case == "upper" else ("upper", "title"))
        return {"text": _styled(" ".join(words), source), "case": case}

    def read(self, fields):
        if not _names_data(fields["text"]):
            return None
        return {"text": fields["text"], "case": fields["case"].lower()}

    def answer(self, values):
        return _styled(" ".join(values["text"].split()), values["case"])

    def wrong(self, values, rng):
        right = self.answer(values)
        pick = rng.random()
        if pick < 0.4:
            return _styled(right, "lower" if values["case"] == "upper" else "upper")
        if pick < 0.6:
            return _styled(right, "title")
        letters = [i for i, c in enumerate(right) if c.isalpha()]
        i = rng.choice(letters)
        return right[:i] + right[i].swapcase() + right[i + 1:]

    def accepts(self, values, response):
        return normalize_answer(response) == self.answer(values)


class EndWord(Family):
    """A short one-line sentence (3..20 words) whose last word is the given one."""
    name = "end_word"
    slots = {"word": WORD}
    phrasings = (
        Phrasing("Write a short sentence that ends with the word {word}."),
        Phrasing("Give me a sentence whose last word is {word}."),
        Phrasing("Compose one sentence ending in the word {word}."),
        Phrasing("Make up a sentence with {word} as its final word."),
        Phrasing("Reply with one sentence that finishes with {word}."),
        Phrasing("Write one sentence that ends with the word below.", "{word}"),
    )
    SENTENCES = ("We walked past the {w}.", "She pointed at the {w}.",
                 "Nobody noticed the small {w}.", "They talked about the {w}.",
                 "I could not find the {w}.", "He smiled at the old {w}.",
                 "Everyone looked at the {w}.", "My friend likes the {w}.")
    WORD_FIRST = ("The {w} was there all day.", "A {w} stood near us.",
                  "That {w} is very nice.")

    def draw(self, rng, fixed):
        return {"word": rng.choice(WORDS)}

    def read(self, fields):
        return {"word": fields["word"]} if _names_data(fields["word"]) else None

    def answer(self, values):
        # The same word always gets the same sentence, so the answer is a function of the task.
        word = values["word"].lower()
        return self.SENTENCES[sum(map(ord, word)) % len(self.SENTENCES)].format(w=word)

    def wrong(self, values, rng):
        word = values["word"].lower()
        if rng.random() < 0.5:
            return rng.choice(self.WORD_FIRST).format(w=word)
        return rng.choice(self.SENTENCES).format(w=rng.choice([w for w in WORDS if w != word]))

    def accepts(self, values, response):
        text = response.strip()
        words = re.findall(r"[A-Za-z']+", text)
        return ("\n" not in text and 3 <= len(words) <= 20
                and words[-1].lower() == values["word"].lower()
                and re.search(r"[A-Za-z'][.!]?$", text) is not None)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    ADD, SUBTRACT, MULTIPLY, REVERSE, SORT_LETTERS, CountLetter(), MaxNumber(), ChangeCase(),
    EndWord())}
