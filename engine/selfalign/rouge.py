"""ROUGE-L F1 as the `rouge-score` package defines it, and the novelty filter built on it.

Definition (RougeScorer(["rougeL"]) with its defaults): lowercase the text, replace every
run of characters outside [a-z0-9] with a space, split into words (no stemming); with L
the longest common subsequence of the two word lists, precision = L / len(prediction),
recall = L / len(target), F1 = 2 * precision * recall / (precision + recall), and 0 when
either list is empty. The arithmetic below is written in that same order, so scores are
bit-identical to rouge-score's and the `> 0.7` boundary falls on the same pairs.

Speed: words are mapped to integer ids and each word list becomes a string with one code
point per word, so rapidfuzz's C++ LCS (bit-parallel) compares a prompt with the whole
pool in one `cdist` call, across all cores.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

_NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")
_SURROGATES_START, _SURROGATES_SIZE = 0xD800, 0x800
_MAX_WORD_IDS = 0x110000 - _SURROGATES_SIZE
DEFAULT_THRESHOLD = 0.7


def rouge_tokenize(text: str) -> list[str]:
    """rouge-score's default tokenizer without stemming."""
    return _NON_ALNUM_RE.sub(" ", text.lower()).split()


def _f1_from_lcs(lcs: int, target_len: int, prediction_len: int) -> float:
    if target_len == 0 or prediction_len == 0:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l_f1(target: str, prediction: str) -> float:
    """ROUGE-L F1 of two texts; symmetric, equal to rouge-score's rougeL fmeasure."""
    t, p = rouge_tokenize(target), rouge_tokenize(prediction)
    if not t or not p:
        return 0.0
    return _f1_from_lcs(int(LCSseq.similarity(t, p)), len(t), len(p))


def _f1_matrix(lcs: np.ndarray, row_lens: np.ndarray, col_lens: np.ndarray) -> np.ndarray:
    """F1 for a [rows, cols] int matrix of LCS lengths; float64, same op order as above."""
    lcs = lcs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = lcs / row_lens[:, None]
        recall = lcs / col_lens[None, :]
        total = precision + recall
        f1 = 2 * precision * recall / total
    empty = (row_lens[:, None] == 0) | (col_lens[None, :] == 0)
    return np.where(empty | ~(total > 0), 0.0, f1)


class NoveltyResult(NamedTuple):
    kept: bool
    max_score: float
    most_similar: str


class NoveltyFilter:
    """One global pool of instructions (seeds + every prompt kept so far).

    A new text is kept, and joins the pool, when its ROUGE-L F1 against every pool member
    is <= threshold (the reference drops when the max is > 0.7). Batches give exactly the
    result of adding their texts one by one, in order.
    """

    def __init__(self, pool: Iterable[str] = (), threshold: float = DEFAULT_THRESHOLD,
                 workers: int = -1, batch_size: int = 256):
        self.threshold = threshold
        self.workers = workers
        self.batch_size = batch_size
        self._word_ids: dict[str, int] = {}
        self._texts: list[str] = []
        self._encoded: list[str] = []
        self._lengths = np.zeros(1024, dtype=np.float64)
        self.add(pool)

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> list[str]:
        return list(self._texts)

    def _encode(self, text: str) -> str:
        chars = []
        for word in rouge_tokenize(text):
            wid = self._word_ids.get(word)
            if wid is None:
                wid = len(self._word_ids)
                if wid >= _MAX_WORD_IDS:
                    raise ValueError("NoveltyFilter: more than 1.1M distinct words in the pool")
                self._word_ids[word] = wid
            # Skip the surrogate block: those code points are not valid characters.
            chars.append(chr(wid if wid < _SURROGATES_START else wid + _SURROGATES_SIZE))
        return "".join(chars)

    def _append(self, text: str, encoded: str) -> None:
        n = len(self._texts)
        if n == len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
        self._lengths[n] = len(encoded)
        self._texts.append(text)
        self._encoded.append(encoded)

    def add(self, texts: Iterable[str]) -> None:
        """Put texts into the pool without checking them (the seed instructions)."""
        for text in texts:
            self._append(text, self._encode(text))

    def _scores(self, queries: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        """[len(queries), len(choices)] F1 matrix of encoded texts."""
        if not queries or not choices:
            return np.zeros((len(queries), len(choices)))
        # cdist splits work by rows, so threads only pay off for several queries.
        workers = self.workers if len(queries) > 1 else 1
        lcs = process.cdist(queries, choices, scorer=LCSseq.similarity, dtype=np.int32,
                            workers=workers)
        row_lens = np.array([len(q) for q in queries], dtype=np.float64)
        col_lens = np.array([len(c) for c in choices], dtype=np.float64)
        return _f1_matrix(lcs, row_lens, col_lens)

    def max_similarity(self, text: str) -> tuple[float, str]:
        """(highest F1 against the pool, the pool text that reached it); (0.0, "") if empty."""
        scores = self._scores([self._encode(text)], self._encoded)
        if scores.size == 0:
            return 0.0, ""
        best = int(np.argmax(scores[0]))
        return float(scores[0, best]), self._texts[best]

    def add_if_novel(self, text: str) -> NoveltyResult:
        """Keep (and pool) the text when no pool member scores above the threshold."""
        return self.add_many_if_novel([text])[0]

    def add_many_if_novel(self, texts: Sequence[str]) -> list[NoveltyResult]:
        """add_if_novel over texts in order; each sees the texts kept before it."""
        results: list[NoveltyResult] = []
        for start in range(0, len(texts), self.batch_size):
            results += self._add_batch(list(texts[start:start + self.batch_size]))
        return results

    def _add_batch(self, texts: list[str]) -> list[NoveltyResult]:
        encoded = [self._encode(t) for t in texts]
        pool_scores = self._scores(encoded, self._encoded)
        within = self._scores(encoded, encoded)
        kept: list[int] = []
        results = []
        for i, text in enumerate(texts):
            best, best_text, found = 0.0, "", False
            if pool_scores.shape[1]:
                j = int(np.argmax(pool_scores[i]))
                best, best_text, found = float(pool_scores[i, j]), self._texts[j], True
            if kept:
                row = within[i, kept]
                k = int(np.argmax(row))
                # Pool members come first in the sequential order, so only a strictly
                # higher score from an earlier text of this batch replaces them.
                if row[k] > best or not found:
                    best, best_text = float(row[k]), texts[kept[k]]
            is_novel = best <= self.threshold
            if is_novel:
                kept.append(i)
            results.append(NoveltyResult(is_novel, best, best_text))
        for i in kept:
            self._append(texts[i], encoded[i])
        return results
