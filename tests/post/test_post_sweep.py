"""After a real tiny sweep on local Ray: export, test-set evaluation and model soups.

Two sweeps, shared by every test here: a causal LM (4 LoRA trials, ranks 2 and 4) and a
3-class classifier (3 LoRA trials, the head in modules_to_save), both with a test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from sweep_helpers import DATES, lm_config

from orchestrator import launch
from orchestrator.cli.post import register
from orchestrator.experiment.errors import CheckpointNotFoundError, TrialNotFoundError
from orchestrator.experiment.layout import EXPORT_INFO_FILE, TEST_RESULTS_FILE
from orchestrator.experiment.trials import ranked_checkpoints
from orchestrator.post.errors import OutputExistsError, UnsupportedRequestError
from orchestrator.post.export import export_best
from orchestrator.post.final_eval import evaluate_test_split, load_eval_data
from orchestrator.post.soup import make_soup
from trainables.checkpointing import ADAPTER_DIR
from trainables.evaluation import collate

pytestmark = pytest.mark.integration

GRID = {"algorithm": "grid", "max_concurrent_trials": 2}


@pytest.fixture(scope="module")
def lm_sweep(local_ray, tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    data = {**lm_config(tiny_lm_dir)["data"], "test": str(DATES / "test.jsonl"),
            "max_eval_examples": 32}
    config = lm_config(
        tiny_lm_dir, name="post-lm", storage_path=str(tmp_path_factory.mktemp("post")),
        data=data, train={"batch_size": 8, "max_steps": 20, "eval_every_steps": 10, "seed": 0},
        search_space={"lora.r": {"type": "grid", "values": [2, 4]},
                      "train.learning_rate": {"type": "grid", "values": [3e-3, 1e-2]}},
        search=GRID, scheduler={"type": "fifo"}, num_samples=1, baseline=False,
    )
    return launch(config, live=False)


@pytest.fixture(scope="module")
def cls_sweep(local_ray, tiny_encoder_dir: Path, sentiment_files: dict,
              tmp_path_factory: pytest.TempPathFactory):
    config = lm_config(
        tiny_encoder_dir, task="sequence_classification", name="post-cls",
        storage_path=str(tmp_path_factory.mktemp("post")), metric="eval_f1",
        data={**sentiment_files, "text_column": "sentence", "max_length": 32},
        lora={"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
        train={"batch_size": 8, "max_steps": 40, "eval_every_steps": 20, "seed": 0},
        search_space={"train.learning_rate": {"type": "grid", "values": [3e-3, 1e-2, 3e-2]}},
        search=GRID, scheduler={"type": "fifo"}, num_samples=1, baseline=False,
    )
    return launch(config, live=False)


def _cli(*args: str):
    group = click.Group("sweep")
    register(group)
    return CliRunner().invoke(group, list(args))


def _batch(sweep) -> dict[str, torch.Tensor]:
    data = load_eval_data(sweep.config)
    return collate(data.data.validation[:8], data.pad_id, sweep.config.task)


def _logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"]).logits


def test_export_adapter_and_merged_match_the_best_model(lm_sweep, tiny_lm_dir: Path,
                                                        tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    batch = _batch(lm_sweep)
    best, _ = lm_sweep.load_best_model()
    expected = _logits(best, batch)

    adapter_dir = export_best(lm_sweep, tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md",
            EXPORT_INFO_FILE} <= {p.name for p in adapter_dir.iterdir()}
    info = json.loads((adapter_dir / EXPORT_INFO_FILE).read_text())
    assert info["trial_id"] == lm_sweep.best_trial_id and info["layout"] == "adapter"
    assert info["metric"] == {"name": "eval_loss", "mode": "min", "value": lm_sweep.best_value}
    assert info["base_model"]["path"] == str(tiny_lm_dir)
    assert "lora" in info["trial_config"] and info["settings"]["lora"]["r"] in (2, 4)
    assert f"PeftModel.from_pretrained(base, '{adapter_dir}')" in (adapter_dir / "README.md"
                                                                   ).read_text()
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
    assert torch.allclose(_logits(peft_model, batch), expected, atol=1e-5)

    result = _cli("export", lm_sweep.experiment_path, "--out", str(tmp_path / "merged"),
                  "--merge")
    assert result.exit_code == 0, result.output
    merged_dir = tmp_path / "merged"
    files = {p.name for p in merged_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not files & {"adapter_config.json", "adapter_model.safetensors"}
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert torch.allclose(_logits(merged, batch), expected, atol=1e-5)


def test_export_classifier_carries_its_head(cls_sweep, tiny_encoder_dir: Path,
                                            tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    batch = _batch(cls_sweep)
    best, _ = cls_sweep.load_best_model()
    expected = _logits(best, batch)
    adapter_dir = export_best(cls_sweep, tmp_path / "adapter")
    load_kwargs = json.loads((adapter_dir / EXPORT_INFO_FILE).read_text())["base_load_kwargs"]
    # The README's loading code passes them too; integer labels name the classes by their id.
    assert load_kwargs == {"num_labels": 3, "id2label": {"0": "0", "1": "1", "2": "2"},
                           "label2id": {"0": 0, "1": 1, "2": 2}}
    assert "num_labels=3" in (adapter_dir / "README.md").read_text()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_encoder_dir, **load_kwargs)
    peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
    assert torch.allclose(_logits(peft_model, batch), expected, atol=1e-5)
    merged = AutoModelForSequenceClassification.from_pretrained(
        export_best(cls_sweep, tmp_path / "merged", merge=True)).eval()
    assert merged.config.num_labels == 3
    assert torch.allclose(_logits(merged, batch), expected, atol=1e-5)


def test_export_errors_say_what_to_do(lm_sweep, tmp_path: Path) -> None:
    with pytest.raises(TrialNotFoundError, match="trial 'nope' has no checkpoint.*trials with one"):
        export_best(lm_sweep, tmp_path / "x", trial_id="nope")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_best(lm_sweep, tmp_path / "full")
    other = ranked_checkpoints(lm_sweep)[1].trial_id
    info = json.loads((export_best(lm_sweep, tmp_path / "full", trial_id=other, overwrite=True)
                       / EXPORT_INFO_FILE).read_text())
    assert info["trial_id"] == other and info["rank"] == 2
    result = _cli("soup", lm_sweep.experiment_path, "--top-k", "9")
    assert result.exit_code == 2
    assert "top_k=9 but only 4 of the 4 trials" in result.output
    with pytest.raises(CheckpointNotFoundError, match="top_k=9 but only 4"):
        make_soup(lm_sweep, top_k=9)
    with pytest.raises(UnsupportedRequestError, match="soup needs top_k >= 2"):
        make_soup(lm_sweep, top_k=1)


def test_evaluate_prints_validation_and_test_and_writes_json(lm_sweep) -> None:
    result = _cli("evaluate", lm_sweep.experiment_path, "--top-k", "2")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "trial_id" in line).split()
    assert header.index("test_loss") == header.index("eval_loss") + 1  # side by side
    written = json.loads((Path(lm_sweep.experiment_path) / TEST_RESULTS_FILE).read_text())
    assert [t["rank"] for t in written["trials"]] == [1, 2]
    best = written["trials"][0]
    assert best["trial_id"] == lm_sweep.best_trial_id
    assert best["validation"]["eval_loss"] == lm_sweep.best_value  # as the trial reported it
    assert written["test_examples"] == 32
    # The test figures are the model's own on the test split, not validation's.
    from trainables.evaluation import evaluate

    model, _ = lm_sweep.load_best_model()
    data = load_eval_data(lm_sweep.config)
    direct = evaluate(model, data.data.test, task="causal_lm", batch_size=8,
                      pad_id=data.pad_id, device=model.device)
    assert best["test"]["test_loss"] == pytest.approx(direct["eval_loss"], rel=1e-6)
    assert best["test"]["test_loss"] != best["validation"]["eval_loss"]
    report = evaluate_test_split(lm_sweep, top_k=1, write=False)
    assert report.rows[0]["test"] == pytest.approx(best["test"], rel=1e-6)


def test_uniform_soup_is_the_exact_mean_update_and_loads_plainly(lm_sweep, tiny_lm_dir: Path,
                                                                 tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "soup"
    result = _cli("soup", lm_sweep.experiment_path, "--top-k", "3", "--method", "uniform",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "best single" in result.output and "soup (uniform, 3 of 3)" in result.output
    assert "test_loss" in result.output
    members = ranked_checkpoints(lm_sweep, 3)
    configs = [json.loads((Path(m.uri) / ADAPTER_DIR / "adapter_config.json").read_text())
               for m in members]
    assert len({c["r"] for c in configs}) == 2  # the soup mixes ranks 2 and 4
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    expected = load_file(str(tiny_lm_dir / "model.safetensors"))[
        "model.layers.0.self_attn.q_proj.weight"].clone()
    for member, config in zip(members, configs, strict=True):
        adapter = load_file(str(Path(member.uri) / ADAPTER_DIR / "adapter_model.safetensors"))
        update = adapter[f"{key}.lora_B.weight"] @ adapter[f"{key}.lora_A.weight"]
        expected += update * (config["lora_alpha"] / config["r"]) / 3
    soup_model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert torch.allclose(soup_model.model.layers[0].self_attn.q_proj.weight, expected,
                          atol=1e-6)
    info = json.loads((out / EXPORT_INFO_FILE).read_text())
    assert info["soup"]["ingredients"] == [m.trial_id for m in members]
    data = load_eval_data(lm_sweep.config)
    reloaded = data.evaluate(soup_model, "validation")
    assert reloaded["eval_loss"] == pytest.approx(info["validation_metrics"]["eval_loss"],
                                                  rel=1e-5)


def test_greedy_soup_is_never_worse_than_the_best_single(lm_sweep) -> None:
    soup = make_soup(lm_sweep, top_k=4, method="greedy")
    assert soup.ingredients[0] == soup.members[0] == lm_sweep.best_trial_id
    assert len(soup.greedy_steps) == 4
    assert soup.validation["eval_loss"] <= soup.best_single["validation"]["eval_loss"]
    # The best trial merged scores what it reported, so greedy beats the sweep's best too.
    assert soup.best_single["validation"]["eval_loss"] == pytest.approx(lm_sweep.best_value,
                                                                        rel=1e-5)
    assert soup.test is not None and soup.best_single["test"] is not None
    kept = [s["trial_id"] for s in soup.greedy_steps if s["kept"]]
    assert kept == soup.members
    assert sum(soup.weights) == pytest.approx(1.0)


def test_ties_soup_merges_trials_of_different_ranks(lm_sweep) -> None:
    soup = make_soup(lm_sweep, top_k=3, method="ties", density=0.5)
    assert soup.weights == [1.0, 1.0, 1.0] and soup.density == 0.5
    assert all(torch.isfinite(torch.tensor(v)) for v in soup.validation.values())
    assert set(soup.test or {}) == {"test_loss", "test_perplexity", "test_token_accuracy",
                                    "test_examples", "test_loss_se"}
    assert "soup (ties, 3 of 3)" in soup.summary()


def test_classifier_soup_averages_heads_and_loads_plainly(cls_sweep, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    soup = make_soup(cls_sweep, top_k=2, method="uniform", out=tmp_path / "soup")
    heads = [load_file(str(Path(m.uri) / ADAPTER_DIR / "adapter_model.safetensors"))
             ["base_model.model.classifier.weight"] for m in ranked_checkpoints(cls_sweep, 2)]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "soup").eval()
    assert torch.allclose(model.classifier.weight, (heads[0] + heads[1]) / 2, atol=1e-6)
    assert {"eval_f1", "test_f1"} <= set(soup.table().columns)
    data = load_eval_data(cls_sweep.config)
    assert data.evaluate(model, "validation")["eval_f1"] == pytest.approx(
        soup.validation["eval_f1"], rel=1e-6)


def test_slerp_of_the_top_two_scores_each_t_and_exports_the_best(lm_sweep, tiny_lm_dir: Path,
                                                                 tmp_path: Path) -> None:
    """`sweep soup --method slerp --t 0,0.5,0.75`: t = 0 is the best trial itself, each t is
    scored on validation, the best is kept and exported as W0 + slerp(t; dW_1, dW_2)."""
    from transformers import AutoModelForCausalLM

    from orchestrator.post.slerp import slerp

    out = tmp_path / "slerp"
    result = _cli("soup", lm_sweep.experiment_path, "--method", "slerp", "--t", "0,0.5,0.75",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    top = ranked_checkpoints(lm_sweep, 2)
    info = json.loads((out / EXPORT_INFO_FILE).read_text())
    soup = info["soup"]
    assert soup["method"] == "slerp" and soup["ingredients"] == [c.trial_id for c in top]
    steps = soup["slerp_steps"]
    assert [s["t"] for s in steps] == [0.0, 0.5, 0.75]
    assert steps[0]["eval_loss"] == pytest.approx(
        info["best_single"]["validation"]["eval_loss"], rel=1e-6)
    best = min(steps, key=lambda s: s["eval_loss"])
    assert soup["t"] == best["t"] and [s["kept"] for s in steps] == [s is best for s in steps]
    assert info["validation_metrics"]["eval_loss"] == pytest.approx(best["eval_loss"])
    assert soup["weights"] == [pytest.approx(1 - best["t"]), pytest.approx(best["t"])]
    for t in ("t=0 ", "t=0.5 ", "t=0.75 "):
        assert f"slerp: {t}" in result.output

    key = "base_model.model.model.layers.0.self_attn.q_proj"
    updates = []
    for member in top:
        config = json.loads((Path(member.uri) / ADAPTER_DIR / "adapter_config.json").read_text())
        adapter = load_file(str(Path(member.uri) / ADAPTER_DIR / "adapter_model.safetensors"))
        updates.append(adapter[f"{key}.lora_B.weight"] @ adapter[f"{key}.lora_A.weight"]
                       * (config["lora_alpha"] / config["r"]))
    expected = load_file(str(tiny_lm_dir / "model.safetensors"))[
        "model.layers.0.self_attn.q_proj.weight"] + slerp(best["t"], *updates)[0]
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    assert torch.allclose(exported.model.layers[0].self_attn.q_proj.weight, expected, atol=1e-6)


def test_slerp_of_named_trials_keeps_their_order(lm_sweep) -> None:
    first, _, third = ranked_checkpoints(lm_sweep, 3)
    soup = make_soup(lm_sweep, method="slerp", trials=[third.trial_id, first.trial_id], t=0.25)
    assert soup.ingredients == [third.trial_id, first.trial_id]
    assert soup.t == 0.25 and soup.weights == [0.75, 0.25]
    assert soup.best_single["trial_id"] == first.trial_id  # the better-ranked of the two
    assert soup.best_single["validation"]["eval_loss"] == pytest.approx(lm_sweep.best_value,
                                                                        rel=1e-5)
    assert "SLERP of" in soup.summary() and "soup (slerp t=0.25)" in soup.summary()
    with pytest.raises(TrialNotFoundError, match="no-such-trial"):
        make_soup(lm_sweep, method="slerp", trials=[first.trial_id, "no-such-trial"])
