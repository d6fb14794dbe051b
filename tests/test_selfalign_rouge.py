import random

import pytest
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer

from engine.selfalign.rouge import NoveltyFilter, rouge_l_f1, rouge_tokenize

SCORER = rouge_scorer.RougeScorer(["rougeL"])
WORDS = ["the", "The", "cat", "CAT", "sat", "on", "mat", "a", "dog", "ran", "x2", "42",
         "naïve", "İstanbul", "über", "e-mail", "don't", "K", "ß", "_", "日本"]
PUNCT = [".", ",", "!", "?", "--", "...", "'", "\"", "(", ")", ":", "\n", "\t", "  "]


def random_text(rng: random.Random, max_words: int = 14) -> str:
    parts = []
    for _ in range(rng.randint(0, max_words)):
        parts.append(rng.choice(WORDS))
        parts.append(rng.choice(PUNCT) if rng.random() < 0.3 else " ")
    return "".join(parts)


def reference_f1(target: str, prediction: str) -> float:
    return SCORER.score(target, prediction)["rougeL"].fmeasure


def test_tokenizer_matches_rouge_score():
    rng = random.Random(1)
    for _ in range(300):
        text = random_text(rng)
        assert rouge_tokenize(text) == SCORER._tokenizer.tokenize(text)


def test_f1_equals_rouge_score_on_random_pairs():
    rng = random.Random(0)
    pairs = [(random_text(rng), random_text(rng)) for _ in range(400)]
    pairs += [("", ""), ("", "a b"), ("!!!", "cat"), ("Cat.", "cat"), ("a a a", "a")]
    for target, prediction in pairs:
        # Same operations in the same order: bit-identical, not merely within 1e-9.
        assert rouge_l_f1(target, prediction) == reference_f1(target, prediction), (
            target, prediction)


def test_lcsseq_works_on_word_lists():
    assert LCSseq.similarity(["a", "b", "c", "d"], ["b", "x", "d"]) == 2
    assert LCSseq.similarity([1, 2, 3], [3, 2, 1]) == 1


def reference_novelty(pool, texts, threshold=0.7):
    """The reference loop: rouge-score against every pooled text, keep when max <= 0.7."""
    pool, out = list(pool), []
    for text in texts:
        scores = [reference_f1(p, text) for p in pool]
        best = max(scores, default=0.0)
        kept = best <= threshold
        out.append((kept, best, pool[scores.index(best)] if scores else ""))
        if kept:
            pool.append(text)
    return out


def near_duplicate_texts(rng: random.Random, n: int) -> list[str]:
    base = ["Write a short poem about the sea at night",
            "Explain how a bill becomes a law in the country",
            "Give three tips for saving money on groceries each week"]
    texts = []
    for _ in range(n):
        words = rng.choice(base).split()
        for _ in range(rng.randint(0, 4)):
            op = rng.random()
            if op < 0.4 and len(words) > 3:
                del words[rng.randrange(len(words))]
            elif op < 0.8:
                words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS))
            else:
                words[rng.randrange(len(words))] = rng.choice(WORDS)
        texts.append(" ".join(words))
    return texts


def test_novelty_filter_matches_the_sequential_reference():
    rng = random.Random(5)
    seeds = ["Write a short poem about the sea", "List some tips for saving money"]
    texts = near_duplicate_texts(rng, 120) + ["", "!!!"]
    expected = reference_novelty(seeds, texts)
    got = NoveltyFilter(seeds, batch_size=16).add_many_if_novel(texts)
    assert [tuple(r) for r in got] == expected
    assert any(k for k, _, _ in expected) and not all(k for k, _, _ in expected)


def test_batched_and_one_by_one_agree():
    texts = near_duplicate_texts(random.Random(9), 80)
    one = NoveltyFilter(["seed instruction text"], workers=1)
    singles = [one.add_if_novel(t) for t in texts]
    batched = NoveltyFilter(["seed instruction text"], batch_size=7).add_many_if_novel(texts)
    assert singles == batched


def test_threshold_is_strict_and_pool_grows_only_with_kept_texts():
    # 7 of 10 words shared in order: F1 = 0.7 exactly, which is kept (drop only when > 0.7).
    a = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    b = "w1 w2 w3 w4 w5 w6 w7 x8 x9 x10"
    assert rouge_l_f1(a, b) == pytest.approx(0.7)
    assert reference_f1(a, b) <= 0.7
    novelty = NoveltyFilter([a])
    assert novelty.add_if_novel(b).kept
    result = novelty.add_if_novel("w1 w2 w3 w4 w5 w6 w7 w8 w9 y10")
    assert not result.kept and result.max_score == pytest.approx(0.9)
    assert result.most_similar == a
    assert len(novelty) == 2 and novelty.texts == [a, b]


def test_empty_pool_and_max_similarity():
    novelty = NoveltyFilter()
    assert novelty.max_similarity("anything at all") == (0.0, "")
    assert novelty.add_if_novel("first text here") == (True, 0.0, "")
    assert novelty.max_similarity("first text") == (pytest.approx(0.8), "first text here")
    assert len(novelty) == 1
