"""The generation metric (`train.generation_eval` -> eval_exact_match): the fixed sample, the
scoring of generated answers, and one tiny-model run through the training loop."""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from sweep_helpers import ROOT, lm_config

from orchestrator.config.loading import load_config
from orchestrator.run.preflight import build_plan
from trainables.config import GenerationEvalConfig
from trainables.generation import generate, generation_metrics
from trainables.loop import fit


@pytest.fixture(scope="module")
def sums_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """GSM8K-shaped rows: {"question", "answer"} with the answer ending in `#### N`."""
    folder = tmp_path_factory.mktemp("sums")
    rng = random.Random(0)
    paths = {}
    for split, n in (("train", 64), ("validation", 24)):
        rows = []
        for _ in range(n):
            a, b = rng.randrange(10), rng.randrange(10)
            rows.append({"question": f"{a}+{b}?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"})
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[split] = str(path)
    return paths


def _config(model_dir: Path, sums: dict[str, str], **generation: int) -> dict:
    return lm_config(
        model_dir, data={"train": sums["train"], "validation": sums["validation"],
                         "prompt_template": "Q: {question}\nA:", "completion_template": " {answer}",
                         "max_length": 48},
        train={"batch_size": 8, "max_steps": 10, "eval_every_steps": 5, "seed": 0,
               "torch_threads": 1,
               "generation_eval": {"num_examples": 6, "max_new_tokens": 12, **generation}},
        metric="eval_exact_match",
    )


def _plan(config: dict):
    cfg = load_config(config)
    cfg.base_dir = str(ROOT)
    return cfg, build_plan(cfg)


def test_the_sample_is_fixed_and_carries_reference_answers(tiny_lm_dir: Path,
                                                           sums_files: dict) -> None:
    cfg, plan = _plan(_config(tiny_lm_dir, sums_files))
    assert cfg.mode == "max"  # eval_exact_match: higher is better
    samples = plan.data.generation_validation
    assert len(samples) == 6
    rows = [json.loads(line) for line in Path(sums_files["validation"]).read_text().splitlines()]
    answers = {r["answer"].rsplit("#### ", 1)[1] for r in rows}
    assert all(s["answer"] in answers for s in samples)
    _, again = _plan(_config(tiny_lm_dir, sums_files))
    assert again.data.generation_validation == samples  # seeded: every trial scores these rows


class _Oracle(torch.nn.Module):
    """Generates a fixed continuation per prompt (by its length), to test the scoring."""

    def __init__(self, continuations: dict[int, list[int]]) -> None:
        super().__init__()
        self.continuations = continuations
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id,
                 **_: object) -> torch.Tensor:
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            new = self.continuations[int(mask.sum())][:max_new_tokens]
            rows.append(ids.tolist() + new + [pad_token_id] * (max_new_tokens - len(new)))
        return torch.tensor(rows)


def test_exact_match_scores_the_generated_final_answers(tiny_lm_dir: Path) -> None:
    from tokenizers import decoders

    from trainables.config import ModelConfig
    from trainables.modeling import load_tokenizer

    tok = load_tokenizer(ModelConfig(path=str(tiny_lm_dir)))
    tok.backend_tokenizer.decoder = decoders.Fuse()  # characters back without spaces between
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    samples = [{"prompt_ids": enc("Q: 1+1?\nA:"), "answer": "2"},
               {"prompt_ids": enc("Q: 10+10?\nA:"), "answer": "20"},
               {"prompt_ids": enc("Q: 3+4+5?\nA:"), "answer": "12"}]
    oracle = _Oracle({
        len(samples[0]["prompt_ids"]): enc(" 1+1=2\n#### 2") + [tok.eos_token_id] + enc("#### 9"),
        len(samples[1]["prompt_ids"]): enc(" 10+10=20\n#### 21"),
        len(samples[2]["prompt_ids"]): enc(" 3+4+5=12 so 12"),
    })
    config = GenerationEvalConfig(num_examples=3, max_new_tokens=40)
    # Right (text after EOS ignored), wrong number, no `####`: 1 of 3.
    metrics = generation_metrics(oracle, samples, tok, config, batch_size=2,
                                 device=torch.device("cpu"))
    assert metrics == {"eval_exact_match": pytest.approx(1 / 3), "eval_generation_examples": 3}


def test_batched_greedy_generation_equals_one_prompt_at_a_time(tiny_lm_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from trainables.config import ModelConfig
    from trainables.modeling import load_tokenizer

    tok = load_tokenizer(ModelConfig(path=str(tiny_lm_dir)))
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    prompts = [tok(p, add_special_tokens=False)["input_ids"]
               for p in ("Q: 1+1?\nA:", "Q: 12+30?\nA:", "hi")]
    common = {"pad_id": tok.pad_token_id, "eos_id": tok.eos_token_id, "max_new_tokens": 6,
              "device": torch.device("cpu")}
    together = generate(model, prompts, batch_size=3, **common)
    alone = [generate(model, [p], batch_size=1, **common)[0] for p in prompts]
    assert together == alone and any(together)


def _fused_copy(model_dir: Path, folder: Path) -> Path:
    """The tiny LM with a tokenizer that decodes characters back without spaces between, so
    generated text reads `#### 7` (the tiny tokenizer's own decoder writes `# # # #   7`)."""
    from tokenizers import decoders

    from trainables.config import ModelConfig
    from trainables.modeling import load_tokenizer

    shutil.copytree(model_dir, folder)
    tok = load_tokenizer(ModelConfig(path=str(folder)))
    tok.backend_tokenizer.decoder = decoders.Fuse()
    tok.save_pretrained(folder)
    return folder


def _answers_even_sums(tok: Any) -> Callable[..., torch.Tensor]:
    """A stand-in for the model's `generate`: reads each prompt `Q: a+b?` from the (left-padded)
    batch and writes `#### a+b` when that sum is even, `#### a+b+1` when it is odd, then EOS."""

    def generate(self: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 max_new_tokens: int, pad_token_id: int, eos_token_id: int,
                 **_: object) -> torch.Tensor:
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = tok.decode(ids[mask.bool()].tolist())
            a, b = (int(d) for d in re.fullmatch(r"Q: (\d)\+(\d)\?\nA:", prompt).groups())
            written = a + b if (a + b) % 2 == 0 else a + b + 1
            new = tok(f"#### {written}", add_special_tokens=False)["input_ids"] + [eos_token_id]
            new = new[:max_new_tokens]
            rows.append(ids.tolist() + new + [pad_token_id] * (max_new_tokens - len(new)))
        return torch.tensor(rows, device=input_ids.device)

    return generate


def test_tiny_model_run_reports_exact_match(tiny_lm_dir: Path, sums_files: dict,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """Through the training loop and the untrained baseline, with a `generate` whose answers
    are known: right exactly for the sample's even sums."""
    from transformers import LlamaForCausalLM

    from trainables.baseline import evaluate_untrained
    from trainables.config import ModelConfig
    from trainables.modeling import load_tokenizer

    model_dir = _fused_copy(tiny_lm_dir, tmp_path / "lm")
    _, plan = _plan(_config(model_dir, sums_files))
    answers = [int(s["answer"]) for s in plan.data.generation_validation]
    expected = sum(a % 2 == 0 for a in answers) / len(answers)
    assert 0 < expected < 1, answers  # a sample of both kinds: a wrong scoring shows
    monkeypatch.setattr(LlamaForCausalLM, "generate",
                        _answers_even_sums(load_tokenizer(ModelConfig(path=str(model_dir)))))
    reports: list[dict] = []

    def report(metrics: dict, folder: Path) -> None:
        shutil.copytree(folder, tmp_path / f"step-{metrics['step']}")
        reports.append(metrics)

    torch.set_num_threads(1)
    spec = plan.spec.model_copy(update={"train": plan.spec.train.model_copy(
        update={"learning_rate": 1e-2})})
    fit(spec, plan.data, plan.pad_id, report)
    assert [r["step"] for r in reports] == [5, 10]
    for r in reports:
        assert r["eval_exact_match"] == pytest.approx(expected)
        assert r["eval_generation_examples"] == 6
    saved = json.loads((tmp_path / "step-10" / "metrics.json").read_text())
    assert saved["eval_exact_match"] == reports[-1]["eval_exact_match"]
    baseline = evaluate_untrained(plan.spec, plan.data, plan.pad_id)
    assert baseline["eval_exact_match"] == pytest.approx(expected)
