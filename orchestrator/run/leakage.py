"""The leakage check before a sweep: held-out texts that also occur in train (exact,
normalized, or near-duplicate), printed, saved as leakage.json, or refused
(`quality.refuse_on_leakage`). Fit flags live in `experiment.fit`, the forgetting check in
`post.forgetting`.

>>> report = check_leakage(["the cat sat", "a dog"], {"validation": ["The cat sat!", "new"]})
>>> report.splits[0].normalized, report.leaked
(1, 1)
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.config.errors import UserError

if TYPE_CHECKING:
    from trainables.data import PreparedData

_PUNCTUATION = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


# --- data leakage -----------------------------------------------------------------------------


class LeakageError(UserError, ValueError):
    """Held-out texts leak into train and the config asks to refuse such sweeps."""


@dataclass
class LeakExample:
    kind: str  # "exact", "normalized" or "near"
    similarity: float
    held_out_text: str
    train_text: str


@dataclass
class SplitLeakage:
    split: str
    size: int
    exact: int = 0  # identical text (outer whitespace aside)
    normalized: int = 0  # identical after lowercasing, dropping punctuation, collapsing spaces
    near: int = 0  # n-gram Jaccard >= threshold, but not identical after normalization
    examples: list[LeakExample] = field(default_factory=list)

    @property
    def leaked(self) -> int:
        return self.exact + self.normalized + self.near


@dataclass
class LeakageReport:
    train_size: int
    threshold: float
    ngram: int
    splits: list[SplitLeakage]
    seconds: float

    @property
    def leaked(self) -> int:
        return sum(s.leaked for s in self.splits)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for split, data in zip(self.splits, out["splits"], strict=True):
            data["leaked"] = split.leaked
        return {**out, "leaked": self.leaked}


def normalize_text(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace: `" Hi,  THERE!"` -> `"hi there"`."""
    return _SPACES.sub(" ", _PUNCTUATION.sub("", text.lower())).strip()


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _TrainIndex:
    """Train texts looked up three ways: as they are, normalized, and by character n-grams.

    Near-duplicates use prefix filtering (Bayardo et al., "All-pairs", 2007): with every n-gram
    set ordered rarest first, two sets with Jaccard >= t share one of their first
    |s| - ceil(t*|s|) + 1 n-grams, so probing only those finds every such pair (exact, no
    sampling), and rare n-grams keep the candidate lists short.
    """

    def __init__(self, train: Sequence[str], threshold: float, ngram: int) -> None:
        self.train, self.threshold, self.ngram = train, threshold, ngram
        self.exact = {t.strip(): t for t in train}
        normalized = [normalize_text(t) for t in train]
        self.normalized = {n: t for n, t in zip(normalized, train, strict=True) if n}
        self.sets = [self.shingles(n) for n in normalized]
        frequency = Counter(gram for s in self.sets for gram in s)
        ordered = sorted(frequency.items(), key=lambda kv: (kv[1], kv[0]))
        self.rank = {gram: i for i, (gram, _) in enumerate(ordered)}
        self.index: dict[int, list[int]] = defaultdict(list)
        for i, grams in enumerate(self.sets):
            for gram in self.prefix(grams):
                self.index[gram].append(i)

    def shingles(self, normalized: str) -> frozenset[int]:
        n = self.ngram
        if len(normalized) <= n:
            return frozenset((hash(normalized),)) if normalized else frozenset()
        return frozenset(hash(normalized[i : i + n]) for i in range(len(normalized) - n + 1))

    def prefix(self, grams: frozenset[int]) -> list[int]:
        keep = len(grams) - math.ceil(self.threshold * len(grams) - 1e-9) + 1
        # N-grams no train text has rank first: any fixed total order keeps the filter exact.
        return sorted(grams, key=lambda g: self.rank.get(g, -1))[:keep]

    def match(self, text: str) -> tuple[str, float, str] | None:
        """(kind, similarity, train text) of the closest train text, None if none is close."""
        if text.strip() in self.exact:
            return "exact", 1.0, self.exact[text.strip()]
        norm = normalize_text(text)
        if norm in self.normalized:
            return "normalized", 1.0, self.normalized[norm]
        grams = self.shingles(norm)
        # Length filter: J >= t needs t*|a| <= |b| <= |a|/t (slack for float rounding).
        low, high = self.threshold * len(grams) - 1e-9, len(grams) / self.threshold + 1e-9
        best, best_i = 0.0, -1
        for i in {i for gram in self.prefix(grams) for i in self.index[gram]}:
            other = self.sets[i]
            if low <= len(other) <= high and len(grams & other) / len(grams | other) > best:
                best, best_i = len(grams & other) / len(grams | other), i
        return ("near", best, self.train[best_i]) if best >= self.threshold else None


def check_leakage(
    train_texts: Sequence[str], held_out: Mapping[str, Sequence[str]], *,
    threshold: float = 0.9, ngram: int = 5, max_examples: int = 5,
) -> LeakageReport:
    """Count held-out texts that also occur in train; each is counted once, by its closest kind.

    10k train x 1k held-out texts take about a second (tests/report/test_quality.py).
    """
    started = time.perf_counter()
    index = _TrainIndex(train_texts, threshold, ngram)
    splits = []
    for name, texts in held_out.items():
        result = SplitLeakage(split=name, size=len(texts))
        for text in texts:
            found = index.match(text)
            if found is None:
                continue
            kind, similarity, train_text = found
            setattr(result, kind, getattr(result, kind) + 1)
            if len(result.examples) < max_examples:
                result.examples.append(
                    LeakExample(kind, round(similarity, 3), _short(text), _short(train_text))
                )
        splits.append(result)
    return LeakageReport(len(train_texts), threshold, ngram, splits,
                         round(time.perf_counter() - started, 3))


def check_data_leakage(data: PreparedData, threshold: float = 0.9) -> LeakageReport:
    """`check_leakage` on the splits a sweep prepared (test too, once `PreparedData` keeps it)."""
    held_out = {"validation": data.raw_validation_texts,
                "test": getattr(data, "raw_test_texts", None) or []}
    return check_leakage(data.raw_train_texts, {k: v for k, v in held_out.items() if v},
                         threshold=threshold)


def format_leakage_warning(report: LeakageReport) -> str:
    """A few lines for the console: counts per split, examples, and what to do."""
    if report.leaked == 0:
        names = "/".join(s.split for s in report.splits)
        return (f"Leakage check: no {names} text occurs in train (exact, normalized or "
                f"near-duplicate at {report.ngram}-gram Jaccard >= {report.threshold}).")
    lines = []
    for s in report.splits:
        if not s.leaked:
            continue
        lines.append(
            f"Data leakage: {s.leaked} of {s.size} {s.split} texts ({s.leaked / s.size:.1%}) "
            f"also occur in train ({report.train_size} texts): {s.exact} exact, {s.normalized} "
            f"after normalizing case/spaces/punctuation, {s.near} near-duplicates "
            f"({report.ngram}-gram Jaccard >= {report.threshold})."
        )
        lines += [f"  {s.split} {e.held_out_text!r} ~ train {e.train_text!r} ({e.kind}, "
                  f"{e.similarity:.2f})" for e in s.examples[:3]]
    lines.append("Held-out metrics will look better than they are: remove these texts from "
                 "train (or from the held-out split); `quality.refuse_on_leakage: true` stops "
                 "such sweeps.")
    return "\n".join(lines)


def enforce_leakage_policy(report: LeakageReport, refuse_on_leakage: bool) -> None:
    """Raise `LeakageError` when there is leakage and the config refuses it."""
    if refuse_on_leakage and report.leaked:
        raise LeakageError(
            f"{format_leakage_warning(report)}\nThe sweep was not started "
            "(quality.refuse_on_leakage: true); to run it anyway, set "
            "quality.refuse_on_leakage: false (--set quality.refuse_on_leakage=false)"
        )


# --- overfitting / underfitting ---------------------------------------------------------------


# --- catastrophic forgetting ------------------------------------------------------------------


