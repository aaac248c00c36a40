"""Quality checks around a sweep: data leakage before it, fit flags and forgetting after it.

`check_leakage`: held-out texts also in train (exact, normalized, or near-duplicate);
`flag_trials`: overfitting / underfitting per trial from its reports; `forgetting_check`: the
tuned model's LM loss on general English text against the base model's.

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
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import Field

from trainables.config import StrictModel

if TYPE_CHECKING:
    from orchestrator.config import SweepConfig
    from trainables.data import PreparedData

LEAKAGE_FILE = "leakage.json"  # written into the experiment folder by launch()
FORGETTING_FILE = "forgetting.json"  # written by `sweep report --forgetting`
OVERFIT_TOLERANCE = 0.05  # last eval_loss worse than the best by more than this (relative)
UNDERFIT_IMPROVEMENT = 0.05  # eval_loss fell by more than this over the last third of evals
FORGETTING_TOLERANCE = 0.01  # relative change of the general-text loss counted as no change
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


class QualityConfig(StrictModel):
    check_leakage: bool = Field(
        True, description="Before the sweep, count validation/test texts that also occur in "
        "train (exact, normalized, near-duplicate) and print a warning."
    )
    refuse_on_leakage: bool = Field(
        False, description="Refuse to start the sweep when any leakage is found."
    )
    near_duplicate_threshold: float = Field(
        0.9, gt=0.0, le=1.0, description="Character 5-gram Jaccard similarity from which two "
        "texts count as near-duplicates: lower catches more paraphrases, and more false alarms."
    )


# --- data leakage -----------------------------------------------------------------------------


class LeakageError(ValueError):
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


def fit_flags(
    history: pd.DataFrame, *, overfit_tolerance: float = OVERFIT_TOLERANCE,
    underfit_improvement: float = UNDERFIT_IMPROVEMENT, min_evaluations: int = 3,
) -> dict[str, Any]:
    """Flags from one trial's reports (columns eval_loss, train_loss, step, total_steps).

    overfitting: the best eval_loss came before the last evaluation, the last one is worse than
    it by more than `overfit_tolerance` (relative), and train_loss at the end is lower than at
    the best step (training still improves while validation degrades).
    underfitting: the trial ran its whole budget (last step >= total_steps), its last eval_loss
    is its best, and it fell by more than `underfit_improvement` (relative) over the last third
    of its evaluations: more steps would likely still help.
    Both need `min_evaluations` finite eval_loss values.
    """
    flags: dict[str, Any] = {"overfitting": False, "underfitting": False, "fit_note": ""}
    if not {"eval_loss", "step"} <= set(history.columns):
        return flags
    h = history.dropna(subset=["eval_loss", "step"]).drop_duplicates("step", keep="last")
    h = h[h["eval_loss"].map(math.isfinite)].sort_values("step").reset_index(drop=True)
    if len(h) < min_evaluations:
        return flags
    loss, steps = h["eval_loss"].astype(float), h["step"]
    best, last = int(loss.idxmin()), len(h) - 1
    train = h["train_loss"] if "train_loss" in h else pd.Series([math.nan] * len(h))
    rise = (loss[last] - loss[best]) / max(abs(loss[best]), 1e-12)
    if best < last and rise > overfit_tolerance and train[last] < train[best]:
        flags["overfitting"] = True
        flags["fit_note"] = (
            f"eval_loss best {loss[best]:.4g} at step {steps[best]}, last {loss[last]:.4g} at "
            f"step {steps[last]} (+{rise:.0%}) while train_loss fell {train[best]:.4g} -> "
            f"{train[last]:.4g}"
        )
        return flags
    total = h["total_steps"].iloc[-1] if "total_steps" in h else math.nan
    ran_full_budget = bool(pd.notna(total) and steps[last] >= total)
    ref = last - max(1, round(len(h) / 3))
    drop = (loss[ref] - loss[last]) / max(abs(loss[ref]), 1e-12)
    if ran_full_budget and loss[last] <= loss.min() and drop > underfit_improvement:
        flags["underfitting"] = True
        flags["fit_note"] = (
            f"eval_loss still falling at the end of the budget: {loss[ref]:.4g} at step "
            f"{steps[ref]} -> {loss[last]:.4g} at step {steps[last]} (-{drop:.0%})"
        )
    return flags


def flag_trials(histories: Mapping[str, pd.DataFrame], **thresholds: Any) -> pd.DataFrame:
    """One row per trial: trial_id, overfitting, underfitting, fit_note (see `fit_flags`).

    `histories` is `ExperimentAnalysis.trial_dataframes`: trial_id -> its reports.
    """
    rows = [{"trial_id": trial_id, **fit_flags(history, **thresholds)}
            for trial_id, history in histories.items()]
    return pd.DataFrame(rows, columns=["trial_id", "overfitting", "underfitting", "fit_note"])


def add_fit_flags(trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """`trials` (one row per trial_id) with the `flag_trials` columns; no history: no flags."""
    out = trials.merge(flag_trials(histories), on="trial_id", how="left")
    for column in ("overfitting", "underfitting"):
        out[column] = out[column].astype("boolean").fillna(False).astype(bool)
    out["fit_note"] = out["fit_note"].fillna("")
    return out


# --- catastrophic forgetting ------------------------------------------------------------------


def general_texts() -> list[str]:
    """The general-English sample shipped with the package (one sentence a line)."""
    text = resources.files("orchestrator").joinpath("data/general_text.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def forgetting_check(
    config: SweepConfig, checkpoint_dir: str | Path, texts: Sequence[str] | None = None,
    *, max_length: int = 128, batch_size: int = 8,
) -> dict[str, Any]:
    """Plain LM loss (mean over tokens) of the base and the tuned model on general text.

    `delta = tuned_loss - base_loss`: above 0, fine-tuning made the model worse at general
    English; `forgetting` is True when that is more than FORGETTING_TOLERANCE of the base loss.
    `checkpoint_dir` is a local folder (`SweepResult.local_checkpoint()`).
    Classifiers have no LM head to compare, so they are skipped with a reason.
    """
    if config.task != "causal_lm":
        return {"base_loss": None, "tuned_loss": None, "delta": None,
                "skipped": f"task {config.task!r} has no language-model head; forgetting is "
                           "measured for causal_lm only"}
    from orchestrator.export import load_checkpoint_model
    from trainables import modeling
    from trainables.evaluation import evaluate

    tokenizer = modeling.load_tokenizer(config.model)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = [(tokenizer(t, add_special_tokens=False)["input_ids"] + eos)[:max_length]
               for t in (general_texts() if texts is None else texts)]
    examples = [{"input_ids": ids, "labels": ids} for ids in encoded if len(ids) > 1]
    if not examples:
        raise ValueError("forgetting_check: no text long enough to score; give longer texts")

    def lm_loss(model: Any) -> float:
        return float(evaluate(model.eval(), examples, task="causal_lm", batch_size=batch_size,
                              pad_id=int(tokenizer.pad_token_id), device=model.device)["eval_loss"])

    # One model in memory at a time: the base first (attaching the adapter changes it in place).
    base_loss = lm_loss(modeling.load_model(config.model, "causal_lm",
                                            pad_token_id=tokenizer.pad_token_id))
    tuned_loss = lm_loss(load_checkpoint_model(config, Path(checkpoint_dir))[0])
    relative = (tuned_loss - base_loss) / base_loss
    return {"base_loss": base_loss, "tuned_loss": tuned_loss, "delta": tuned_loss - base_loss,
            "relative_delta": relative, "forgetting": relative > FORGETTING_TOLERANCE,
            "texts": len(examples), "tokens": sum(len(e["input_ids"]) - 1 for e in examples)}
