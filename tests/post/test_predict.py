"""`sweep predict` on exported folders (no Ray): a classifier prints its label names and
probabilities, a causal LM its completion with the sweep's prompt template; user errors exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from orchestrator.cli.predict import register
from orchestrator.experiment.layout import EXPORT_INFO_FILE, SWEEP_CONFIG_FILE
from orchestrator.post.errors import PredictInputError
from orchestrator.post.predict import load_predictor

NAMES = ["bad", "meh", "good"]
TEMPLATE = "Write {date} in words:"


def _cli(*args: str):
    group = click.Group("sweep")
    register(group)
    return CliRunner().invoke(group, list(args))


@pytest.fixture(scope="module")
def classifier_export(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain transformers classifier folder whose config names its classes."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("cls-export")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_encoder_dir, num_labels=3, id2label=dict(enumerate(NAMES)),
        label2id={n: i for i, n in enumerate(NAMES)})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_encoder_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lm_export(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A merged causal-LM export: the tiny LM plus the sweep_export.json `sweep export` writes."""
    out = tmp_path_factory.mktemp("lm-export") / "model"
    shutil.copytree(tiny_lm_dir, out)
    (out / EXPORT_INFO_FILE).write_text(json.dumps({
        "task": "causal_lm", "layout": "merged",
        "settings": {"data": {"prompt_template": TEMPLATE, "max_length": 64}}}))
    return out


def test_classifier_prints_label_name_and_top_probabilities(classifier_export: Path) -> None:
    result = _cli("predict", str(classifier_export), "it was great", "--top-k", "3")
    assert result.exit_code == 0, result.output
    first, *rows = result.stdout.strip().splitlines()
    assert first in NAMES
    shown = {line.split()[0]: float(line.split()[1]) for line in rows}
    assert set(shown) == set(NAMES) and sum(shown.values()) == pytest.approx(1.0, abs=1e-3)
    assert max(shown, key=lambda n: shown[n]) == first


def test_classifier_file_to_jsonl(classifier_export: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("it was great\n\nit was awful\nplain\n")
    out = tmp_path / "pred.jsonl"
    result = _cli("predict", str(classifier_export), "--file", str(inputs), "--out", str(out),
                  "--top-k", "2")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["it was great", "it was awful", "plain"]
    predictor = load_predictor(classifier_export, device="cpu")
    enc = predictor.tokenizer(["it was awful"], return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(predictor.model(**enc).logits, -1)[0]
    assert rows[1]["label"] == NAMES[int(probs.argmax())]
    assert rows[1]["probabilities"][rows[1]["label"]] == pytest.approx(float(probs.max()),
                                                                       rel=1e-5)
    assert all(len(r["probabilities"]) == 2 for r in rows)


def _greedy(model_dir: Path, prompt: str, n: int) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=1)
    new = out[0, ids.shape[1]:].tolist()
    return tok.decode(new[: new.index(1)] if 1 in new else new, skip_special_tokens=True)


def test_causal_lm_applies_the_sweeps_template_unless_raw(lm_export: Path,
                                                          tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"date": "2038-04-01"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = _cli("predict", str(lm_export), "--file", str(rows), "--out", str(out),
                  "--max-new-tokens", "5")
    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["prompt"] == "Write 2038-04-01 in words:"
    assert row["completion"] == _greedy(lm_export, row["prompt"], 5)
    # One text fills the template's one field; --raw sends it as it is.
    templated = _cli("predict", str(lm_export), "2038-04-01", "--max-new-tokens", "5")
    assert templated.exit_code == 0, templated.output
    assert templated.stdout.strip() == row["completion"].strip()
    raw = load_predictor(lm_export, device="cpu").predict(["2038-04-01"], raw=True,
                                                           max_new_tokens=5)
    assert raw[0]["prompt"] == "2038-04-01"
    assert raw[0]["completion"] == _greedy(lm_export, "2038-04-01", 5)


def test_user_errors_exit_2(lm_export: Path, tmp_path: Path) -> None:
    cases = {
        (str(tmp_path / "nope"), "hi"): "no such file or folder",
        (str(tmp_path), "hi"): "neither an experiment",
        (str(lm_export),): "give one input",
    }
    (tmp_path / "stray.txt").write_text("x")
    for args, message in cases.items():
        result = _cli("predict", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: ") and message in result.output, result.output
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"day": "x"}) + "\n")
    result = _cli("predict", str(lm_export), "--file", str(rows))
    assert result.exit_code == 2 and "lacks ['date']" in result.output, result.output
    result = _cli("predict", str(lm_export), "--file", str(tmp_path / "missing.txt"))
    assert result.exit_code == 2 and "--file" in result.output, result.output
    # An experiment folder whose sweep config is broken: the config's own error, exit 2.
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / SWEEP_CONFIG_FILE).write_text("task: causal_lm\n")
    result = _cli("predict", str(tmp_path / "exp"), "hi")
    assert result.exit_code == 2 and "model: required" in result.output, result.output
    with pytest.raises(PredictInputError, match="--trial 3 picks a trial of an experiment"):
        load_predictor(lm_export, trial_id="3")


@pytest.mark.parametrize(("path", "uri"), [
    ("s3://bucket/sweeps/exp", True),
    ("s3://bucket/exp?region=us-east-1&endpoint_override=http://127.0.0.1:9000", True),
    ("gs://bucket/sweeps/exp", True),
    ("hdfs://namenode:8020/sweeps/exp", True),
    ("file:///srv/sweeps/exp", True),
    ("~/sweep_results/exp", False),
    ("sweep_results/exp", False),
    ("/srv/sweeps/exp", False),
])
def test_experiment_uris_of_every_store_are_read_as_experiments(
        path: str, uri: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the storage module opens as a URI (gs:// too, not only s3://) goes to the
    experiment reader; a local path that is not there is a missing file. No network: the
    experiment reader is stubbed."""
    from orchestrator.experiment.storage import is_uri
    from orchestrator.post import predict

    assert is_uri(path) is uri
    read: list[tuple[str, str | None]] = []
    monkeypatch.setattr(predict, "_from_experiment",
                        lambda where, trial_id, device: read.append((where, trial_id)))
    monkeypatch.chdir(tmp_path)  # the relative and the ~ paths name nothing here
    monkeypatch.setenv("HOME", str(tmp_path))
    if uri:
        predict.load_predictor(path, trial_id="3", device="cpu")
        assert read == [(path, "3")]
    else:
        with pytest.raises(PredictInputError, match="no such file or folder"):
            predict.load_predictor(path, device="cpu")
        assert read == []
