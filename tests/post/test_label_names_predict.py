"""After a real tiny sweep on local Ray: classes named by a mapping file reach the metrics,
the metric that selects trials, the exported config.json, and `sweep predict EXPERIMENT`.

Two one-trial sweeps: a classifier whose data has string labels named by a TweetEval-style
mapping.txt (in an order that is not the sorted one), and a causal LM with a prompt template.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sweep_helpers import ONE_TRIAL, invoke, lm_config

from orchestrator import launch
from orchestrator.cli.predict import register
from orchestrator.experiment.layout import EXPORT_INFO_FILE
from orchestrator.post.export import export_best
from orchestrator.post.predict import load_predictor

pytestmark = pytest.mark.integration

NAMES = ["bad", "meh", "good"]  # sorted would be bad, good, meh
def _cli(*args: str):
    return invoke(register, *args)


@pytest.fixture(scope="module")
def named_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("named")
    rng = random.Random(0)
    words = {"bad": ["awful", "sad"], "meh": ["fine", "plain"], "good": ["great", "happy"]}
    paths = {}
    for split, n in (("train", 160), ("validation", 36)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for _ in range(n):
                label = rng.choice(NAMES)
                f.write(json.dumps({"sentence": f"it was {rng.choice(words[label])}",
                                    "label": label}) + "\n")
        paths[split] = str(folder / f"{split}.jsonl")
    (folder / "mapping.txt").write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(NAMES)))
    paths["mapping"] = str(folder / "mapping.txt")
    return paths


@pytest.fixture(scope="module")
def named_sweep(local_ray, tiny_encoder_dir: Path, named_files: dict,
                tmp_path_factory: pytest.TempPathFactory):
    config = lm_config(
        tiny_encoder_dir, task="sequence_classification", name="named-cls",
        storage_path=str(tmp_path_factory.mktemp("named-sweep")), metric="eval_f1_good",
        data={"train": named_files["train"], "validation": named_files["validation"],
              "text_column": "sentence", "max_length": 32,
              "label_names_file": named_files["mapping"]},
        lora={"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
        train={"batch_size": 8, "max_steps": 20, "eval_every_steps": 10, "seed": 0,
               "learning_rate": 1e-2},
        search_space={}, **ONE_TRIAL,
    )
    return launch(config, live=False)


@pytest.fixture(scope="module")
def lm_sweep(local_ray, tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    config = lm_config(
        tiny_lm_dir, name="predict-lm", storage_path=str(tmp_path_factory.mktemp("lm-sweep")),
        train={"batch_size": 8, "max_steps": 10, "eval_every_steps": 5, "seed": 0,
               "learning_rate": 1e-2},
        search_space={}, **ONE_TRIAL,
    )
    return launch(config, live=False)


def test_named_classes_reach_metrics_and_selection(named_sweep) -> None:
    best = named_sweep.best_metrics
    assert named_sweep.metric == "eval_f1_good" and named_sweep.mode == "max"
    for name in NAMES:
        assert {f"eval_precision_{name}", f"eval_recall_{name}", f"eval_f1_{name}"} <= set(best)
    assert 0.0 <= best["eval_precision"] <= 1.0 and 0.0 <= best["eval_recall"] <= 1.0
    assert named_sweep.best_value == best["eval_f1_good"]


def test_exports_carry_id2label_and_label2id(named_sweep, tiny_encoder_dir: Path,
                                            tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification

    merged = export_best(named_sweep, tmp_path / "merged", merge=True)
    config = AutoConfig.from_pretrained(merged)
    assert config.id2label == dict(enumerate(NAMES))
    assert config.label2id == {n: i for i, n in enumerate(NAMES)}
    adapter = export_best(named_sweep, tmp_path / "adapter")
    kwargs = json.loads((adapter / EXPORT_INFO_FILE).read_text())["base_load_kwargs"]
    assert kwargs["id2label"] == {str(i): n for i, n in enumerate(NAMES)}
    base = AutoModelForSequenceClassification.from_pretrained(tiny_encoder_dir, **kwargs)
    assert PeftModel.from_pretrained(base, adapter).config.id2label == kwargs["id2label"]
    # The experiment and its export predict the same label and probabilities.
    via_cli = _cli("predict", named_sweep.experiment_path, "it was great")
    assert via_cli.exit_code == 0, via_cli.output
    label = via_cli.stdout.strip().splitlines()[0]
    assert label in NAMES
    for folder in (merged, adapter):
        [row] = load_predictor(folder, device="cpu").predict(["it was great"])
        assert row["label"] == label


def test_predict_experiment_applies_the_sweeps_prompt_template(lm_sweep, tmp_path: Path
                                                               ) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"date": "2038-04-01"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = _cli("predict", lm_sweep.experiment_path, "--file", str(rows), "--out", str(out),
                  "--max-new-tokens", "8")
    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["prompt"] == "Write 2038-04-01 in words:"  # lm_config's template
    exported = export_best(lm_sweep, tmp_path / "merged", merge=True)
    again = load_predictor(exported, device="cpu").predict([{"date": "2038-04-01"}],
                                                             max_new_tokens=8)
    assert again == [row]  # sweep_export.json carries the template
    raw = _cli("predict", lm_sweep.experiment_path, "2038-04-01", "--raw", "--out",
               str(tmp_path / "raw.jsonl"), "--max-new-tokens", "8")
    assert raw.exit_code == 0, raw.output
    assert json.loads((tmp_path / "raw.jsonl").read_text())["prompt"] == "2038-04-01"
