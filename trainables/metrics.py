"""Metric names and the classification metrics behind them (scikit-learn), without torch.

A classifier reports, besides `eval_loss` and `eval_accuracy`, macro precision, recall and F1
(`eval_precision`, `eval_recall`, `eval_f1`), the same per class (`eval_f1_<label>`, ...,
`<label>` being the class name when known, else its index), and with `data.positive_label` the
F1 of that class alone (`eval_binary_f1`, e.g. TweetEval irony's official metric). The names
are checked here both by the config (which metric may select trials) and by the trainables.

>>> keys = metric_label_keys(["not irony", "irony"])
>>> keys
['not_irony', 'irony']
>>> classification_metrics([1, 0, 1], [1, 1, 1], keys, positive_id=1)["eval_binary_f1"]
0.8
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from trainables.config import REPORTED_METRICS

PER_CLASS_METRICS = ("precision", "recall", "f1")
_PER_CLASS = re.compile(r"eval_(precision|recall|f1)_(.+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

# Reported only when a config field turns them on: metric -> (better, that field).
OPTIONAL_METRICS: dict[str, dict[str, tuple[str, str]]] = {
    "causal_lm": {"eval_exact_match": ("max", "train.generation_eval")},
    "sequence_classification": {"eval_binary_f1": ("max", "data.positive_label")},
}


def metric_label_keys(label_names: Sequence[str]) -> list[str]:
    """The `<label>` part of each class's metric names, in id order.

    A name is kept as it is where it is made of letters, digits, `_`, `.` and `-`; other runs of
    characters become `_` (so `not irony` -> `not_irony`; a `/` would nest the metric in
    TensorBoard). When that leaves a name empty or two names equal, every class is named by its
    index instead, so a key always names exactly one class.
    """
    keys = [_UNSAFE.sub("_", name).strip("_") for name in label_names]
    if any(not k for k in keys) or len(set(keys)) != len(keys):
        return [str(i) for i in range(len(label_names))]
    return keys


def per_class_metric(metric: str) -> tuple[str, str] | None:
    """(`precision`|`recall`|`f1`, label key) of a per-class metric name, else None."""
    match = _PER_CLASS.fullmatch(metric)
    return (match.group(1), match.group(2)) if match else None


# Metrics that are shares of examples, in [0, 1] (after the `eval_`/`test_` prefix): macro and
# per-class ratios included. -> the report key counting the examples, after the same prefix.
RATE_METRIC_SAMPLES = {
    "accuracy": "examples", "token_accuracy": "examples", "precision": "examples",
    "recall": "examples", "f1": "examples", "binary_f1": "examples",
    "exact_match": "generation_examples",  # the generation sample, not the validation split
}


def rate_metric_sample_key(metric: str) -> str | None:
    """For a metric that is a share in [0, 1], the report key counting its examples; None for
    any other (loss, perplexity, an unknown name).

    >>> rate_metric_sample_key("eval_f1_joy"), rate_metric_sample_key("test_exact_match")
    ('eval_examples', 'test_generation_examples')
    >>> rate_metric_sample_key("eval_loss") is None
    True
    """
    prefix, _, name = metric.partition("_")
    if not name:
        return None
    if _PER_CLASS.fullmatch(f"eval_{name}"):
        name = name.split("_", 1)[0]  # one class's: of fewer rows, so noisier than this says
    sample = RATE_METRIC_SAMPLES.get(name)
    return f"{prefix}_{sample}" if sample else None


def metric_mode(task: str, metric: str) -> str | None:
    """`min`/`max` for a metric the task's trainable can report, None for an unknown name."""
    fixed = REPORTED_METRICS.get(task, {}).get(metric)
    if fixed is not None:
        return fixed
    optional = OPTIONAL_METRICS.get(task, {}).get(metric)
    if optional is not None:
        return optional[0]
    if task == "sequence_classification" and per_class_metric(metric) is not None:
        return "max"
    return None


def known_metric_names(task: str) -> list[str]:
    """What `metric` may be for `task`, for error messages (per-class names as patterns)."""
    names = sorted(REPORTED_METRICS.get(task, {})) + sorted(OPTIONAL_METRICS.get(task, {}))
    if task == "sequence_classification":
        names += [f"eval_{m}_<label>" for m in PER_CLASS_METRICS]
    return names


def classification_metrics(
    preds: Sequence[int], labels: Sequence[int], label_keys: Sequence[str],
    positive_id: int | None = None,
) -> dict[str, float]:
    """Accuracy, macro and per-class precision/recall/F1, and the positive class's F1.

    Every class of `label_keys` counts in the macro means, also one absent from this split;
    a class never predicted (or never present) scores 0 where its ratio is undefined
    (scikit-learn's `zero_division=0`).
    """
    from sklearn.metrics import precision_recall_fscore_support

    ids = list(range(len(label_keys)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, labels=ids, average=None, zero_division=0)
    metrics = {
        "eval_accuracy": sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels),
        "eval_precision": float(precision.mean()),
        "eval_recall": float(recall.mean()),
        "eval_f1": float(f1.mean()),
    }
    for i, key in enumerate(label_keys):
        metrics[f"eval_precision_{key}"] = float(precision[i])
        metrics[f"eval_recall_{key}"] = float(recall[i])
        metrics[f"eval_f1_{key}"] = float(f1[i])
    if positive_id is not None:
        metrics["eval_binary_f1"] = float(f1[positive_id])
    return metrics


# --- generation: the final answer of a GSM8K-style completion ---------------------------------

_FINAL_ANSWER = re.compile(r"####\s*([^\n]*)")
_NUMBER = re.compile(r"[-+]?\$?\s*(\d[\d,]*(\.\d+)?|\.\d+)")


def final_answer(text: str) -> str | None:
    """The text after the first `####` marker up to the end of its line, normalized; None when
    there is no marker or nothing after it (GSM8K writes `#### 18` as a completion's last line).

    >>> final_answer("She makes 9 * 2 = $18.\\n#### 1,018.00")
    '1018'
    >>> final_answer("the answer is 18") is None
    True
    """
    match = _FINAL_ANSWER.search(text)
    if match is None:
        return None
    answer = normalize_answer(match.group(1))
    return answer or None


def normalize_answer(answer: str) -> str:
    """A number by its value (`$1,000.50` -> `1000.5`, `18.0` -> `18`), anything else with
    surrounding spaces and a trailing full stop removed."""
    text = answer.strip().rstrip(".").strip()
    if _NUMBER.fullmatch(text):
        digits = text.replace(",", "").replace("$", "").replace(" ", "")
        try:
            value = float(digits)
        except ValueError:
            return text
        return str(int(value)) if value.is_integer() else repr(value)
    return text


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of completions whose final answer equals the reference's (a missing one is wrong)."""
    hits = sum(final_answer(p) == r for p, r in zip(predictions, references, strict=True))
    return hits / len(references) if references else float("nan")
