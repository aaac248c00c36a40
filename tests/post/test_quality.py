"""Quality checks: data leakage (planted and real), fit flags on made-up curves, forgetting on
the tiny LM. No Ray."""

from __future__ import annotations

import math
import random
import shutil
import statistics
import string
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sweep_helpers import ROOT, SHARED_DATA, lm_config

from orchestrator.config.loading import load_config
from orchestrator.config.sections import QualityConfig
from orchestrator.experiment.fit import (
    add_fit_flags,
    fit_flags,
    flag_trials,
    metric_standard_error,
)
from orchestrator.post.forgetting import forgetting_check, general_texts
from orchestrator.run.leakage import (
    LeakageError,
    check_data_leakage,
    check_leakage,
    enforce_leakage_policy,
    format_leakage_warning,
    normalize_text,
)
from trainables.evaluation import loss_standard_error

TWEETEVAL = SHARED_DATA / "tweeteval-emotion"
WORDS = ["".join(random.Random(i).choices(string.ascii_lowercase, k=3 + i % 6)) for i in range(600)]


def _sentence(rng: random.Random, words: int = 25) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _typo(text: str, rng: random.Random) -> str:
    """One letter in the middle changed: a near-duplicate (5-gram Jaccard ~0.93)."""
    i = len(text) // 2 + rng.randrange(-10, 10)
    while not text[i].isalpha():
        i += 1
    return text[:i] + ("x" if text[i] != "x" else "y") + text[i + 1 :]


def _reworded(text: str, rng: random.Random) -> str:
    """Three words replaced: similar, but below the 0.9 threshold (not a leak)."""
    words = text.split()
    for i in rng.sample(range(1, len(words) - 1), 3):
        words[i] = "replacement"
    return " ".join(words)


@pytest.fixture(scope="module")
def planted() -> dict:
    rng = random.Random(7)
    train = [_sentence(rng) for _ in range(2000)]
    fresh = [_sentence(rng) for _ in range(400)]
    picks = rng.sample(range(len(train)), 75)
    validation = (
        [train[i] for i in picks[:20]]  # 20 exact
        + [f"  {train[i].upper().replace(' ', '   ')}!!" for i in picks[20:35]]  # 15 normalized
        + [_typo(train[i], rng) for i in picks[35:45]]  # 10 near
        + [_reworded(train[i], rng) for i in picks[45:55]]  # 10 similar, not leaks
        + fresh[:200]
    )
    test = ([train[i] for i in picks[55:60]] + [_typo(train[i], rng) for i in picks[60:75]]
            + fresh[200:])
    rng.shuffle(validation)
    return {"train": train, "validation": validation, "test": test}


def test_planted_duplicates_are_counted_exactly(planted: dict) -> None:
    report = check_leakage(planted["train"], {"validation": planted["validation"],
                                              "test": planted["test"]})
    val, test = report.splits
    assert (val.size, val.exact, val.normalized, val.near) == (255, 20, 15, 10)
    assert (test.size, test.exact, test.normalized, test.near) == (220, 5, 0, 15)
    assert report.leaked == 65 and val.leaked == 45
    assert len(val.examples) == 5  # max_examples
    assert report.to_dict()["splits"][0]["leaked"] == 45
    every = check_leakage(planted["train"], {"validation": planted["validation"]},
                          max_examples=100).splits[0].examples
    assert Counter(e.kind for e in every) == {"exact": 20, "normalized": 15, "near": 10}
    assert all(0.9 <= e.similarity < 1.0 for e in every if e.kind == "near")
    train_starts = {t[:100] for t in planted["train"]}  # examples are cut at 160 characters
    assert all(e.train_text[:100] in train_starts for e in every)


def test_blocking_misses_nothing_brute_force_finds(planted: dict) -> None:
    """The prefix-filter index is exact: same near-duplicates as comparing every pair."""
    rng = random.Random(3)
    train = planted["train"][:300]
    # Edits from 0 to ~12 letters: similarities spread across the 0.9 threshold.
    held = [train[i] for i in range(0, 300, 3)]
    held = [_typo(_typo(t, rng), rng) if k % 3 else _typo(t, rng) for k, t in enumerate(held)]
    held += [_reworded(t, rng) for t in train[1:300:10]]
    for threshold in (0.8, 0.9):
        report = check_leakage(train, {"validation": held}, threshold=threshold)
        expected = _brute_force_leaks(train, held, threshold)
        assert report.leaked == expected > 0


def _brute_force_leaks(train: list[str], held: list[str], threshold: float, n: int = 5) -> int:
    """Held-out texts whose best character n-gram Jaccard with any train text is >= threshold,
    by a sparse matrix product over every pair (independent of the module's index)."""
    from scipy.sparse import csr_matrix

    def grams(text: str) -> set[str]:
        t = normalize_text(text)
        return {t} if len(t) <= n else {t[i : i + n] for i in range(len(t) - n + 1)}

    sets_train, sets_held = [grams(t) for t in train], [grams(t) for t in held]
    vocab = {g: i for i, g in enumerate({g for s in sets_train + sets_held for g in s})}

    def matrix(sets: list[set[str]]) -> csr_matrix:
        rows = [r for r, s in enumerate(sets) for _ in s]
        cols = [vocab[g] for s in sets for g in s]
        return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), len(vocab)))

    inter = (matrix(sets_held) @ matrix(sets_train).T).toarray()
    sizes_held = np.array([len(s) for s in sets_held])[:, None]
    sizes_train = np.array([len(s) for s in sets_train])[None, :]
    jaccard = inter / (sizes_held + sizes_train - inter)
    return int((jaccard.max(axis=1) >= threshold - 1e-12).sum())


def test_ten_thousand_by_one_thousand_is_fast() -> None:
    rng = random.Random(1)
    train = [_sentence(rng, words=rng.randrange(5, 30)) for _ in range(10_000)]
    held = [_sentence(rng, words=rng.randrange(5, 30)) for _ in range(990)] + train[:10]
    cpu_started = time.process_time()  # CPU time: not inflated by other jobs on the machine
    report = check_leakage(train, {"validation": held})
    cpu_seconds = time.process_time() - cpu_started
    assert report.splits[0].exact == 10
    assert cpu_seconds < 4, cpu_seconds  # ~1.5 s on this project's 2-core machine


@pytest.mark.skipif(not TWEETEVAL.exists(),
                    reason=f"TweetEval data not found at {TWEETEVAL} (shared data absent)")
def test_tweeteval_leakage_matches_brute_force() -> None:
    def lines(name: str) -> list[str]:
        return (TWEETEVAL / f"{name}_text.txt").read_text(encoding="utf-8").splitlines()

    train, val, test = lines("train"), lines("val"), lines("test")
    report = check_leakage(train, {"validation": val, "test": test})
    by_split = {s.split: s for s in report.splits}
    # The public splits share a few tweets that differ only in case, emoji or punctuation.
    assert (by_split["validation"].exact, by_split["validation"].normalized) == (0, 1)
    assert (by_split["test"].exact, by_split["test"].normalized) == (0, 2)
    assert by_split["validation"].leaked == _brute_force_leaks(train, val, 0.9)
    assert by_split["test"].leaked == _brute_force_leaks(train, test, 0.9)
    warning = format_leakage_warning(report)
    assert "1 of 374 validation texts" in warning and "2 of 1421 test texts" in warning


def test_warning_policy_and_clean_data(planted: dict) -> None:
    clean = check_leakage(planted["train"][:100], {"validation": planted["train"][100:200]})
    assert clean.leaked == 0
    assert format_leakage_warning(clean).startswith("Leakage check: no validation text")
    enforce_leakage_policy(clean, refuse_on_leakage=True)  # nothing to refuse

    leaky = check_leakage(planted["train"], {"validation": planted["validation"]})
    warning = format_leakage_warning(leaky)
    assert "45 of 255 validation texts (17.6%) also occur in train" in warning
    assert "20 exact, 15 after normalizing" in warning and "10 near-duplicates" in warning
    enforce_leakage_policy(leaky, refuse_on_leakage=False)  # warn only
    with pytest.raises(LeakageError, match="45 of 255 validation texts") as err:
        enforce_leakage_policy(leaky, refuse_on_leakage=True)
    assert "The sweep was not started (quality.refuse_on_leakage: true)" in str(err.value)
    assert "--set quality.refuse_on_leakage=false" in str(err.value)


def test_normalization_and_prepared_data() -> None:
    assert normalize_text("  Hello,   WORLD!!\n") == "hello world"
    assert normalize_text("@user_1: it's... #great") == "user1 its great"

    class Data:  # the fields of trainables.data.PreparedData the check reads
        raw_train_texts = ["a b c d e f", "g h i j"]
        raw_validation_texts = ["A b c d e f!"]
        raw_test_texts = ["g h i j", "zzz"]

    report = check_data_leakage(Data())  # type: ignore[arg-type]
    assert [(s.split, s.leaked) for s in report.splits] == [("validation", 1), ("test", 1)]
    assert QualityConfig().refuse_on_leakage is False
    with pytest.raises(ValueError):
        QualityConfig(near_duplicate_threshold=1.5)


# --- fit flags ----------------------------------------------------------------------------------


def _history(eval_loss: list[float], train_loss: list[float] | None = None,
             every: int = 10, total: int | None = None) -> pd.DataFrame:
    steps = [every * (i + 1) for i in range(len(eval_loss))]
    return pd.DataFrame({
        "step": steps, "eval_loss": eval_loss,
        "train_loss": train_loss or [2.0 - 0.1 * i for i in range(len(eval_loss))],
        "total_steps": total or steps[-1],
    })


def test_overfitting_flag() -> None:
    flags = fit_flags(_history([2.0, 1.5, 1.2, 1.3, 1.45], [2.1, 1.6, 1.2, 0.9, 0.6]))
    assert flags["overfitting"] and not flags["underfitting"]
    assert "best 1.2 at step 30, last 1.45 at step 50 (+21%, beyond" in flags["fit_note"]
    # Within the tolerance (last only 4% above the best): not flagged.
    assert not fit_flags(_history([2.0, 1.5, 1.2, 1.25, 1.248]))["overfitting"]
    # Validation worse at the end, but train loss rose too: not overfitting (unstable training).
    assert not fit_flags(_history([2.0, 1.2, 1.5], [2.0, 1.0, 1.4]))["overfitting"]
    assert fit_flags(_history([2.0, 1.2, 1.5]), overfit_tolerance=0.5)["overfitting"] is False


def test_underfitting_flag() -> None:
    still_falling = _history([2.0, 1.8, 1.6, 1.4, 1.2, 1.0])
    flags = fit_flags(still_falling)
    assert flags["underfitting"] and not flags["overfitting"]
    assert "1.4 at step 40 -> 1 at step 60 (-29%, beyond" in flags["fit_note"]
    converged = _history([2.0, 1.2, 1.05, 1.02, 1.01, 1.0])  # -2% over the last third
    assert not fit_flags(converged)["underfitting"]
    # Stopped early by the scheduler (budget 100, ran 60): never flagged as underfitting.
    assert not fit_flags(_history([2.0, 1.8, 1.6, 1.4, 1.2, 1.0], total=100))["underfitting"]
    # Improving but the last is not the best: not flagged.
    assert not fit_flags(_history([2.0, 1.5, 1.0, 1.2, 1.1]))["underfitting"]


def test_changes_of_a_loss_near_zero_are_noise() -> None:
    # Seen on the quickstart: 0.0013 -> 0.0012 is -8%, but 0.0001 nats is no reason to train on.
    near_zero = _history([2.3, 0.01, 0.002, 0.0015, 0.0013, 0.0012])
    assert fit_flags(near_zero) == {"overfitting": False, "underfitting": False, "fit_note": ""}
    # Its mirror image: validation up 0.0013 -> 0.0016 (+23%) while train loss falls.
    rising = _history([2.3, 0.01, 0.0013, 0.0015, 0.0016], [2.0, 0.5, 0.3, 0.1, 0.01])
    assert not fit_flags(rising)["overfitting"]
    # The floor is 0.01 nats: the same shape a little above it still flags.
    assert fit_flags(_history([2.3, 0.1, 0.06, 0.045, 0.03]))["underfitting"]


def test_a_slow_real_improvement_at_a_high_loss_flags() -> None:
    # Still 0.24 nats down over the last third, at a loss of ~2.6: more steps would help.
    slow = _history([3.2, 3.0, 2.85, 2.72, 2.6, 2.48])
    flags = fit_flags(slow)
    assert flags["underfitting"] and "2.72 at step 40 -> 2.48 at step 60" in flags["fit_note"]
    # With the trainable's standard error of each evaluation (20 noisy examples), the same
    # drop is within 2 standard errors of the difference: not flagged.
    noisy = slow.assign(eval_loss_se=0.1)
    assert not fit_flags(noisy)["underfitting"]
    assert fit_flags(slow.assign(eval_loss_se=0.02))["underfitting"]  # 0.24 > 2 x 0.028


def test_a_real_overfit_flags_and_train_noise_does_not() -> None:
    overfit = _history([2.0, 1.5, 1.2, 1.3, 1.45], [2.1, 1.6, 1.2, 0.9, 0.6])
    assert fit_flags(overfit.assign(eval_loss_se=0.03))["overfitting"]  # +0.25 > 2 x 0.042
    assert not fit_flags(overfit.assign(eval_loss_se=0.1))["overfitting"]
    # Validation up 0.25 nats, but train loss only 0.005 lower: no sign training went on.
    flat_train = _history([2.0, 1.5, 1.2, 1.3, 1.45], [2.1, 1.6, 1.2, 1.198, 1.195])
    assert not fit_flags(flat_train)["overfitting"]


def test_f1_flags_allow_for_the_evaluation_set_size() -> None:
    f1 = _history([0.30, 0.50, 0.58, 0.62, 0.66, 0.70]).rename(columns={"eval_loss": "eval_f1"})
    # +0.08 over the last third: beyond 2 binomial standard errors of 2000 examples (0.029) ...
    assert fit_flags(f1.assign(eval_examples=2000), metric="eval_f1", mode="max")["underfitting"]
    # ... but not of 100 examples (0.13): a 100-example validation set cannot tell.
    assert not fit_flags(f1.assign(eval_examples=100), metric="eval_f1",
                         mode="max")["underfitting"]
    # Mode max: F1 falling from its best while train loss falls is overfitting.
    dropped = _history([0.30, 0.60, 0.70, 0.62, 0.55], [2.0, 1.5, 1.0, 0.6, 0.3]).rename(
        columns={"eval_loss": "eval_f1"}).assign(eval_examples=1000)
    flags = fit_flags(dropped, metric="eval_f1", mode="max")
    assert flags["overfitting"] and "eval_f1 best 0.7 at step 30" in flags["fit_note"]
    assert not fit_flags(dropped.assign(eval_examples=50), metric="eval_f1",
                         mode="max")["overfitting"]


def test_precision_and_per_class_f1_flags_allow_for_the_evaluation_set_size() -> None:
    # +0.08 over the last third: 2 standard errors of 100 examples are about 0.14.
    for metric in ("eval_precision", "eval_recall", "eval_f1_joy", "eval_binary_f1"):
        rising = _history([0.30, 0.40, 0.44, 0.48, 0.52, 0.56]).rename(
            columns={"eval_loss": metric})
        assert not fit_flags(rising.assign(eval_examples=100), metric=metric,
                             mode="max")["underfitting"], metric
        assert fit_flags(rising.assign(eval_examples=5000), metric=metric,
                         mode="max")["underfitting"], metric
        assert metric_standard_error(metric, {metric: 0.5, "eval_examples": 100}) == 0.05


def test_exact_match_flags_allow_for_the_generation_sample_size() -> None:
    """16 generated examples: one example more or less is 6.25 points, never a flag."""
    one_more = _history([0.25, 0.25, 0.25, 0.25, 0.3125]).rename(
        columns={"eval_loss": "eval_exact_match"})
    # The validation split is large; the generation sample is what exact match is a share of.
    one_more = one_more.assign(eval_examples=5000, eval_generation_examples=16)
    assert not fit_flags(one_more, metric="eval_exact_match", mode="max")["underfitting"]
    one_less = _history([0.25, 0.3125, 0.25], [2.0, 1.5, 1.0]).rename(
        columns={"eval_loss": "eval_exact_match"})
    one_less = one_less.assign(eval_examples=5000, eval_generation_examples=16)
    assert not fit_flags(one_less, metric="eval_exact_match", mode="max")["overfitting"]
    from_zero = _history([0.0, 0.0, 0.0, 0.0625]).rename(
        columns={"eval_loss": "eval_exact_match"}).assign(eval_generation_examples=16)
    assert not fit_flags(from_zero, metric="eval_exact_match", mode="max")["underfitting"]
    # A real collapse on 16 examples (12 -> 4 right) still flags, and so does 1/16 of 5000.
    collapse = _history([0.5, 0.75, 0.25], [2.0, 1.5, 1.0]).rename(
        columns={"eval_loss": "eval_exact_match"}).assign(eval_generation_examples=16)
    assert fit_flags(collapse, metric="eval_exact_match", mode="max")["overfitting"]
    assert fit_flags(one_less.assign(eval_generation_examples=5000), metric="eval_exact_match",
                     mode="max")["overfitting"]
    assert metric_standard_error("test_exact_match", {
        "test_exact_match": 0.5, "test_examples": 5000, "test_generation_examples": 16,
    }) == pytest.approx(0.125)


def test_metric_standard_errors() -> None:
    report = {"eval_loss": 1.0, "eval_loss_se": 0.05, "eval_perplexity": math.e,
              "eval_f1": 0.5, "eval_token_accuracy": 0.9, "eval_examples": 100}
    assert metric_standard_error("eval_loss", report) == 0.05
    assert metric_standard_error("eval_perplexity", report) == pytest.approx(0.05 * math.e)
    assert metric_standard_error("eval_f1", report) == pytest.approx(0.05)
    assert metric_standard_error("eval_token_accuracy", report) == pytest.approx(0.03)
    assert metric_standard_error("eval_f1", {"eval_f1": 0.5}) == 0.0  # size unknown
    assert metric_standard_error("eval_loss", {"eval_loss_se": math.nan}) == 0.0


def test_loss_standard_error_clusters_tokens_by_example() -> None:
    # Two examples of 1 and 3 tokens, summed losses 1 and 3: every token's loss is 1, no spread.
    assert loss_standard_error([1.0, 3.0], [1, 3]) == 0.0
    # One label per example: the ordinary standard error of the mean.
    losses = [0.5, 1.5, 1.0, 2.0]
    assert loss_standard_error(losses, [1] * 4) == pytest.approx(
        statistics.stdev(losses) / math.sqrt(4))
    assert math.isnan(loss_standard_error([1.0], [1]))


def test_flags_need_enough_clean_evaluations() -> None:
    assert fit_flags(_history([2.0, 1.0])) == {"overfitting": False, "underfitting": False,
                                               "fit_note": ""}
    diverged = _history([2.0, 1.0, math.nan, math.inf])
    assert not any(fit_flags(diverged)[k] for k in ("overfitting", "underfitting"))
    assert fit_flags(pd.DataFrame())["fit_note"] == ""
    # A resumed trial reports some steps twice: the later report of a step wins.
    resumed = pd.concat([_history([2.0, 1.8, 1.6]), _history([2.0, 1.8, 1.6, 1.4, 1.2, 1.0])])
    assert fit_flags(resumed)["underfitting"]


def test_flag_trials_table() -> None:
    table = flag_trials({
        "a": _history([2.0, 1.5, 1.2, 1.3, 1.45], [2.1, 1.6, 1.2, 0.9, 0.6]),
        "b": _history([2.0, 1.8, 1.6, 1.4, 1.2, 1.0]),
        "c": _history([2.0, 1.2, 1.05, 1.02, 1.01, 1.0]),
        "d": pd.DataFrame(),
    })
    assert list(table.columns) == ["trial_id", "overfitting", "underfitting", "fit_note"]
    assert table.set_index("trial_id")[["overfitting", "underfitting"]].to_dict("index") == {
        "a": {"overfitting": True, "underfitting": False},
        "b": {"overfitting": False, "underfitting": True},
        "c": {"overfitting": False, "underfitting": False},
        "d": {"overfitting": False, "underfitting": False},
    }
    assert list(flag_trials({}).columns) == list(table.columns)
    trials = pd.DataFrame({"trial_id": ["a", "b", "no-history"], "best_eval_loss": [1, 2, 3]})
    merged = add_fit_flags(trials, {
        "a": _history([2.0, 1.5, 1.2, 1.3, 1.45], [2.1, 1.6, 1.2, 0.9, 0.6]),
        "b": _history([2.0, 1.8, 1.6, 1.4, 1.2, 1.0])})
    assert merged["overfitting"].tolist() == [True, False, False]
    assert merged["underfitting"].tolist() == [False, True, False]
    assert merged["fit_note"].iloc[2] == "" and merged["overfitting"].dtype == bool


# --- forgetting ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_checkpoint(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(config, checkpoint) of the tiny LM after 10 LoRA steps on the date data, without Ray."""
    from orchestrator.run.preflight import build_plan
    from trainables.loop import fit

    config = load_config(lm_config(tiny_lm_dir, train={"max_steps": 10, "eval_every_steps": 5,
                                                       "learning_rate": 1e-2, "seed": 0}))
    config.base_dir = str(ROOT)
    plan = build_plan(config)
    target = tmp_path_factory.mktemp("tuned") / "checkpoint"
    torch.set_num_threads(1)
    fit(plan.spec, plan.data, plan.pad_id,
        lambda metrics, folder: shutil.copytree(folder, target, dirs_exist_ok=True))
    return config, target, plan


def test_forgetting_check_on_tiny_lm(tuned_checkpoint) -> None:
    config, checkpoint, plan = tuned_checkpoint
    general = forgetting_check(config, checkpoint)
    assert general["texts"] == len(general_texts()) >= 40
    assert general["delta"] == pytest.approx(general["tuned_loss"] - general["base_loss"])
    # The untrained tiny model is near uniform over its ~108-token vocabulary.
    assert general["base_loss"] == pytest.approx(math.log(108), abs=0.3)
    assert math.isfinite(general["tuned_loss"])
    # On the text it was tuned on, the tuned model is better: negative delta.
    own = forgetting_check(config, checkpoint, plan.data.raw_train_texts[:40])
    assert own["delta"] < 0
    assert own["base_loss"] == pytest.approx(general["base_loss"], abs=0.3)


def test_forgetting_base_loss_matches_plain_transformers(tuned_checkpoint) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, checkpoint, _ = tuned_checkpoint
    texts = general_texts()[:5]
    result = forgetting_check(config, checkpoint, texts)
    tokenizer = AutoTokenizer.from_pretrained(config.model.path)
    model = AutoModelForCausalLM.from_pretrained(config.model.path).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]
                                + [tokenizer.eos_token_id]])
            logits = model(ids).logits[0, :-1]
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    assert result["base_loss"] == pytest.approx(total / count, rel=1e-4)
    assert result["tokens"] == count


def test_forgetting_skips_classifiers(tiny_encoder_dir: Path) -> None:
    config = load_config(lm_config(tiny_encoder_dir, task="sequence_classification",
                                   metric="eval_f1", data={"train": "x.jsonl"}))
    result = forgetting_check(config, "/nonexistent")
    assert result["delta"] is None and "causal_lm only" in result["skipped"]
