"""Search efficiency on TweetEval emotion (MiniLM-L6 + LoRA, validation macro-F1).

    python -m benchmarks.search_efficiency             # full: ~2.5 h on a 2-core machine (a seed of
                                                       # default + HF + random: 51-57 min)
                                                       # (+ two default-sized sweeps: item 3)
    python -m benchmarks.search_efficiency --seeds 1 --trials 4 --max-train 300 --evo-seeds 0
                                                       # smoke run (cmaes needs >= 9 trials)
    python -m benchmarks.search_efficiency --quick     # tiny BERT on toy data, seconds (CI)

1. The default (hyperopt TPE + ASHA, as examples/tweeteval_emotion.yaml) vs random search
   without early stopping (random + FIFO), per search seed: the optimizer steps (summed over
   trials, in the order results arrived) the default needs to reach the best validation F1
   random reaches, against the steps random needed for it.
2. The default vs Hugging Face `Trainer.hyperparameter_search` (optuna backend with optuna's
   defaults: TPE sampler, median pruner; trials in sequence with every core), same space, same
   trials and per-trial budget: best validation F1 and F1 per wall-clock minute.
3. The evolutionary searchers (`search.algorithm: cmaes` and `nsga2`, optuna's CMA-ES and
   NSGA-II, each with the same ASHA) on the first `--evo-seeds` seeds: best validation F1, and
   the steps each needs to reach random search's best, next to the default's. They need a
   trial after their first generation (the config check): --quick runs them with 4 trials in
   generations of 2, the full run's 12 trials fit cmaes's default 7 (3 numeric dimensions).
Each best trial is scored once on the test split (next to the published TweetEval table).
The per-trial budget is shrunk to fit the machine (`--steps`, `--max-train`); the output says so.
After every run the runs so far go to OUT.partial.json; `--resume` keeps them and runs the rest.
Data: ../shared/data/tweeteval-emotion (relative to the project root); skipped when absent.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.common import median

NAME = "search_efficiency"
EVOLUTIONARY = ("cmaes", "nsga2")  # search.algorithm values, run like the default otherwise
DATA = common.SHARED_DATA / "tweeteval-emotion"
PUBLISHED_TEST_F1 = {
    "SVM": 64.7,
    "FastText": 65.2,
    "LSTM": 66.0,
    "RoBERTa-Twitter": 72.0,
    "RoBERTa-base": 76.1,
    "RoBERTa-retrained": 78.5,
    "BERTweet": 79.3,
    "TimeLMs-2021": 80.2,
}


def toy_data(folder: Path) -> Path:
    """TweetEval-shaped {split}_text.txt / {split}_labels.txt files; the label shows in the text."""
    rng, words = random.Random(0), {0: "awful bad sad", 1: "fine okay plain", 2: "great good"}
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 160), ("val", 48), ("test", 48)):
        labels = [rng.randrange(3) for _ in range(n)]
        texts = [f"it was {rng.choice(words[y].split())} and {rng.choice('xyz')}" for y in labels]
        (folder / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
        (folder / f"{split}_labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    return folder


def sweep_config(args: argparse.Namespace, data: Path, model: str | None) -> dict[str, Any]:
    """examples/tweeteval_emotion.yaml with the shrunken budget and the data folder given."""
    from orchestrator.config.loading import read_yaml

    raw = read_yaml((common.ROOT / "examples" / "tweeteval_emotion.yaml").read_text())
    raw["data"].update(
        {
            split: {
                "text": str(data / f"{name}_text.txt"),
                "labels": str(data / f"{name}_labels.txt"),
            }
            for split, name in (("train", "train"), ("validation", "val"), ("test", "test"))
        }
    )
    mapping = data / "mapping.txt"  # the example's path is relative to examples/, not to `data`
    raw["data"]["label_names_file"] = str(mapping) if mapping.is_file() else None
    raw["data"]["max_train_examples"] = args.max_train
    if model is not None:
        raw["model"]["path"] = model
    raw["train"].update({"max_steps": args.steps, "eval_every_steps": args.eval_every})
    raw["scheduler"].update({"grace_period": args.grace, "reduction_factor": 3})
    raw.update({"num_samples": args.trials, "baseline": False, "base_dir": str(common.ROOT)})
    return raw


class Recorder:
    """Every reported validation F1 with its wall time and the steps all trials have taken."""

    def __init__(self) -> None:
        self.started = time.time()
        self.reports: list[dict[str, Any]] = []
        self.failures = 0
        self._steps: dict[Any, int] = {}

    def add(self, trial: Any, step: int, f1: float) -> None:
        self._steps[trial] = step
        self.reports.append(
            {
                "t_s": time.time() - self.started,
                "trial": str(trial),
                "step": step,
                "cum_steps": sum(self._steps.values()),
                "f1": f1,
            }
        )

    def best(self) -> float:
        return max((r["f1"] for r in self.reports), default=float("nan"))

    def reach(self, target: float) -> dict[str, float] | None:
        """The first report at which the best F1 so far is >= target (None: never)."""
        return next(
            (
                {"cum_steps": r["cum_steps"], "t_s": r["t_s"]}
                for r in self.reports
                if r["f1"] >= target - 1e-12
            ),
            None,
        )

    def total_steps(self) -> int:
        return sum(self._steps.values())


def tune_recorder(recorder: Recorder) -> Any:
    from ray.tune import Callback

    class OnResult(Callback):
        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            if "eval_f1" in result:
                recorder.add(trial.trial_id, int(result["step"]), float(result["eval_f1"]))

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.failures += 1  # a retried trial: its redone steps are not counted

    return OnResult()


def run_ours(raw: dict[str, Any], variant: str, seed: int, storage: Path) -> dict[str, Any]:
    """`launch()` itself, with a recorder added to the product's callbacks."""
    from orchestrator.post.final_eval import evaluate_test_split

    module = importlib.import_module("orchestrator.run.launch")  # the package rebinds `launch`
    raw = {
        **raw,
        "name": f"{variant}-seed{seed}",
        "storage_path": str(storage),
        "search": {**raw["search"], "seed": seed},
    }
    if variant == "random":
        raw.update(
            {"search": {**raw["search"], "algorithm": "random"}, "scheduler": {"type": "fifo"}}
        )
    elif variant in EVOLUTIONARY:
        raw["search"] = {**raw["search"], "algorithm": variant}
    recorder = Recorder()
    real = module.build_callbacks

    def with_recorder(*args: Any, **kwargs: Any) -> list[Any]:
        return real(*args, **kwargs) + [tune_recorder(recorder)]

    with (
        common.patched(module, "build_callbacks", with_recorder),
        contextlib.redirect_stdout(io.StringIO()),
    ):  # the per-report progress lines
        result = module.launch(raw, live=False)
    wall = time.time() - recorder.started
    test = evaluate_test_split(result, top_k=1, write=False).rows[0]["test"]
    return {
        "variant": variant,
        "seed": seed,
        # as the experiment recorded it (the config launch() validated and saved)
        "algorithm": result.config.search.algorithm if result.config else None,
        "wall_s": wall,
        "best_val_f1": recorder.best(),
        "test_f1": test["test_f1"],
        "total_steps": recorder.total_steps(),
        "stopped_early": int(result.trials["stopped_early"].sum()),
        "trial_failures": recorder.failures,
        "best_config": result.best_config,
        "reports": recorder.reports,
    }


def hf_search(raw: dict[str, Any], seed: int, work: Path) -> dict[str, Any]:
    """`Trainer.hyperparameter_search(backend="optuna")` on the same tokenized data, model,
    LoRA setting, space, trials and per-trial budget."""
    import datasets
    import optuna
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from orchestrator.config.loading import load_config
    from orchestrator.config.schema import Choice, Grid, LogUniform, QUniform, RandInt
    from orchestrator.run.preflight import build_plan
    from trainables import modeling
    from trainables.evaluation import evaluate, macro_f1

    started = time.time()
    cfg = load_config(raw)
    plan = build_plan(cfg)
    tokenizer = modeling.load_tokenizer(cfg.model)
    recorder = Recorder()
    recorder.started = started
    best: dict[str, Any] = {"f1": -1.0}
    num_labels = plan.data.num_labels
    assert num_labels is not None

    def suggest(trial: Any, section: str) -> dict[str, Any]:
        """Optuna values for one section of the sweep's space (`lora_r`, `learning_rate`, ...);
        asking again for a name returns the value the trial already has."""
        values = {}
        for key, dim in cfg.search_space.items():
            sec, _, field = key.partition(".")
            if sec != section:
                continue
            name = field if section == "train" else f"{section}_{field}"
            if isinstance(dim, Choice | Grid):
                values[field] = trial.suggest_categorical(name, dim.values)
            elif isinstance(dim, RandInt):
                values[field] = trial.suggest_int(name, dim.low, dim.high)
            else:
                step = dim.q if isinstance(dim, QUniform) else None
                values[field] = trial.suggest_float(
                    name, dim.low, dim.high, step=step, log=isinstance(dim, LogUniform)
                )
        return values

    def model_init(trial: Any) -> Any:
        # HF calls model_init before hp_space, so the LoRA values are drawn here.
        lora = cfg.lora.model_copy(update=suggest(trial, "lora") if trial is not None else {})
        model = modeling.load_model(
            cfg.model, cfg.task, num_labels=num_labels, pad_token_id=plan.pad_id
        )
        return modeling.apply_lora(model, lora, cfg.task)

    def hp_space(trial: Any) -> dict[str, Any]:
        return suggest(trial, "train")  # TrainingArguments names: learning_rate, weight_decay

    class Record(TrainerCallback):
        trainer: Any = None

        def on_evaluate(
            self,
            args: Any,
            state: Any,
            control: Any,
            metrics: Any = None,
            model: Any = None,
            **kw: Any,
        ) -> None:
            trial = self.trainer._trial
            recorder.add(trial.number, state.global_step, metrics["eval_f1"])
            if metrics["eval_f1"] > best["f1"]:  # keep the trained weights (LoRA + head)
                best.update(
                    f1=metrics["eval_f1"],
                    params=dict(trial.params),
                    state={
                        k: v.detach().clone()
                        for k, v in model.named_parameters()
                        if v.requires_grad
                    },
                )

    def compute_metrics(pred: Any) -> dict[str, float]:
        return {
            "f1": macro_f1(
                pred.predictions.argmax(-1).tolist(), pred.label_ids.tolist(), num_labels
            )
        }

    train = cfg.train
    max_steps = int(train.max_steps or 0)  # the sweep config always sets max_steps here
    args = TrainingArguments(
        output_dir=str(work / f"hf-{seed}"),
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size or train.batch_size,
        max_steps=max_steps,
        eval_strategy="steps",
        eval_steps=train.eval_every_steps,
        save_strategy="no",
        logging_strategy="no",
        lr_scheduler_type=train.lr_schedule,
        warmup_steps=train.warmup_ratio,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm or 0.0,
        seed=train.seed,
        optim="adamw_torch",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        label_names=["labels"],  # a PeftModel's forward hides them from HF's signature check
    )
    record = Record()
    trainer = Trainer(
        model_init=model_init,
        args=args,
        data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=datasets.Dataset.from_list(plan.data.train),
        eval_dataset=datasets.Dataset.from_list(plan.data.validation),
        compute_metrics=compute_metrics,
        callbacks=[record],
    )
    record.trainer = trainer
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda m: m["eval_f1"],
        n_trials=cfg.num_samples,
        direction="maximize",
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    wall = time.time() - started
    model = model_init(optuna.trial.FixedTrial(best["params"]))
    model.load_state_dict(best["state"], strict=False)
    test = evaluate(
        model,
        plan.data.test,
        task=cfg.task,
        batch_size=args.per_device_eval_batch_size,
        pad_id=plan.pad_id,
        device=torch.device("cpu"),
        num_labels=num_labels,
    )
    return {
        "variant": "hf_optuna",
        "seed": seed,
        "wall_s": wall,
        "best_val_f1": recorder.best(),
        "test_f1": test["eval_f1"],
        "total_steps": recorder.total_steps(),
        "best_config": best["params"],
        "reports": recorder.reports,
    }


def compare_steps(default: dict[str, Any], rand: dict[str, Any]) -> dict[str, Any]:
    """Steps each needs to reach the best validation F1 random search reaches."""
    target = rand["best_val_f1"]
    r_reach, d_reach = first_reach(rand, target), first_reach(default, target)
    assert r_reach is not None  # random reaches its own best
    return {
        "seed": default["seed"],
        "random_best_f1": target,
        "random_steps_to_best": r_reach["cum_steps"],
        "random_total_steps": rand["total_steps"],
        "default_best_f1": default["best_val_f1"],
        "default_steps_to_random_best": d_reach["cum_steps"] if d_reach else None,
        "default_total_steps": default["total_steps"],
        "steps_ratio": d_reach["cum_steps"] / r_reach["cum_steps"] if d_reach else None,
        # the target's reading: random search's compute is all of its steps (no early stop)
        "steps_ratio_vs_random_total": (
            d_reach["cum_steps"] / rand["total_steps"] if d_reach else None
        ),
        "default_test_f1": default["test_f1"],
        "random_test_f1": rand["test_f1"],
    }


def first_reach(run: dict[str, Any], target: float) -> dict[str, Any] | None:
    return next((r for r in run["reports"] if r["f1"] >= target - 1e-12), None)


def per_minute(run: dict[str, Any], target: float) -> dict[str, Any]:
    reach = first_reach(run, target)
    return {
        "variant": run["variant"],
        "seed": run["seed"],
        "best_val_f1": run["best_val_f1"],
        "wall_min": run["wall_s"] / 60,
        "f1_per_min": run["best_val_f1"] / (run["wall_s"] / 60),
        "min_to_common_f1": reach["t_s"] / 60 if reach else None,
        "test_f1": run["test_f1"],
        "steps": run["total_steps"],
    }


def to_hf_best(by: dict[tuple[str, int], dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Per system of one seed: wall seconds from its start to its first validation F1 at or
    above HF's best of that seed (None: never), HF's time over it, and its test macro-F1."""
    hf = by["hf_optuna", seed]
    target = hf["best_val_f1"]
    hf_reach = first_reach(hf, target)  # None only when HF reported no finite F1
    hf_t = hf_reach["t_s"] if hf_reach else None
    rows = []
    for variant in ("default", "random", "hf_optuna"):
        run = by.get((variant, seed))
        if run is None:
            continue
        reach = first_reach(run, target)
        rows.append({
            "variant": variant, "seed": seed, "hf_best_val_f1": target,
            "best_val_f1": run["best_val_f1"],
            "s_to_hf_best": reach["t_s"] if reach else None,
            "hf_s_over_this": (None if hf_t is None else hf_t / reach["t_s"] if reach
                               else 0.0),
            "wall_s": run["wall_s"], "test_f1": run["test_f1"],
        })
    return rows


def evolutionary_rows(by: dict[tuple[str, int], dict[str, Any]], seeds: list[int]
                      ) -> list[dict[str, Any]]:
    """Per seed that ran them: the default and each evolutionary searcher, against the same
    target (random search's best validation F1 of that seed)."""
    rows = []
    for seed in seeds:
        if not any((v, seed) in by for v in EVOLUTIONARY):
            continue
        target = by["random", seed]["best_val_f1"]
        for variant in ("default", *EVOLUTIONARY):
            run = by[variant, seed]
            reach = first_reach(run, target)
            rows.append({
                "variant": variant,
                "seed": seed,
                "best_val_f1": run["best_val_f1"],
                "steps_to_target": reach["cum_steps"] if reach else None,
                "total_steps": run["total_steps"],
                "stopped_early": run["stopped_early"],
                "wall_s": run["wall_s"],
                "test_f1": run["test_f1"],
            })
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny BERT, toy data (CI)")
    parser.add_argument("--seeds", type=int, default=None, help="search seeds (default 3)")
    parser.add_argument("--hf-seeds", type=int, default=1, help="seeds also run with HF")
    parser.add_argument(
        "--evo-seeds", type=int, default=1, help="seeds also run with cmaes and nsga2"
    )
    parser.add_argument(
        "--hf-threads",
        type=int,
        default=None,
        help="torch threads for HF's trials (default: every core; quick 1)",
    )
    parser.add_argument("--trials", type=int, default=None, help="trials per sweep (default 12)")
    parser.add_argument("--steps", type=int, default=None, help="steps per trial (default 90)")
    parser.add_argument(
        "--eval-every", type=int, default=None, help="default: steps / 9 (quick: / 4)"
    )
    parser.add_argument(
        "--grace",
        type=int,
        default=None,
        help="ASHA grace period in steps (default: one evaluation; quick: two)",
    )
    parser.add_argument("--max-train", type=int, default=None, help="cap on train examples")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in OUT.partial.json (written after every run) and run the rest",
    )
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.trials = args.trials or (2 if args.quick else 12)
    args.steps = args.steps or (12 if args.quick else 90)
    args.eval_every = args.eval_every or max(1, args.steps // (4 if args.quick else 9))
    args.grace = args.grace or (2 if args.quick else 1) * args.eval_every
    command = common.command_line(argv, "benchmarks.search_efficiency")
    if not args.quick and not DATA.exists():
        print(
            f"skipped: {DATA} not found; the TweetEval emotion files live in ../shared/data "
            "next to the project (see its README)"
        )
        return {"skipped": f"{DATA} not found"}

    with (
        tempfile.TemporaryDirectory(prefix="bench-search-") as tmp,
        common.LoadSampler(every_s=30) as load,
    ):
        work = Path(tmp)
        model = None
        if args.quick:
            model = str(common.tiny_models().make_tiny_encoder(work / "tiny-bert"))
        raw = sweep_config(args, toy_data(work / "toy") if args.quick else DATA, model)
        # --quick's 2 trials leave cmaes/nsga2 no second generation: 4 trials, generations of 2
        evo_raw = ({**raw, "num_samples": 4, "search": {**raw["search"], "population_size": 2}}
                   if args.quick else raw)
        budget = (
            f"per trial {args.steps} steps x batch {raw['train']['batch_size']}, eval every "
            f"{args.eval_every}, ASHA grace {args.grace} rf 3; {args.trials} trials; train "
            f"examples {args.max_train or 'all'} (the example config: 3 epochs, 12 trials)"
        )
        print(f"budget (shrunk to fit the machine): {budget}", flush=True)
        out = args.out or common.default_out(NAME, args.quick)
        partial = out.with_suffix(".partial.json")
        runs = load_partial(partial, args) if args.resume else []
        done = {(r["variant"], r["seed"]) for r in runs}
        # HF runs one trial at a time on every core (quick: 1 thread; tiny matmuls on
        # several threads of a busy machine spend their time waiting for each other).
        hf_threads = args.hf_threads or (1 if args.quick else os.cpu_count() or 1)
        with common.local_ray():
            for seed in range(args.seeds):
                # HF right after the default of the same seed: side by side, under the same load
                variants = (
                    ["default", "hf_optuna", "random"]
                    if seed < args.hf_seeds
                    else ["default", "random"]
                )
                if seed < args.evo_seeds:
                    variants += EVOLUTIONARY
                for variant in variants:
                    if (variant, seed) in done:
                        print(f"seed {seed} {variant}: kept from {partial}", flush=True)
                        continue
                    if variant == "hf_optuna":
                        with common.torch_threads(hf_threads):
                            runs.append(hf_search(raw, seed, work))
                    else:
                        runs.append(run_ours(evo_raw if variant in EVOLUTIONARY else raw,
                                             variant, seed, work / "results"))
                    print(
                        f"seed {seed} {variant}: best val F1 {runs[-1]['best_val_f1']:.4f}, "
                        f"{runs[-1]['total_steps']} steps, {runs[-1]['wall_s']:.0f}s",
                        flush=True,
                    )
                    save_partial(partial, args, runs)

    payload = summarize(runs, budget)
    common.write_result(
        out,
        name=NAME,
        command=command,
        quick=args.quick,
        load=load,
        payload={
            **payload,
            "budget": budget,
            "args": vars(args) | {"out": str(args.out)},
            "runs": runs,
        },
    )
    partial.unlink(missing_ok=True)
    return payload


def _run_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that fix a run's budget: a partial file is kept only if they match."""
    return {k: v for k, v in vars(args).items() if k not in ("out", "resume")}


def save_partial(path: Path, args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    """The runs so far, so that a stopped benchmark loses at most the run it was in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    record = {"args": _run_args(args), "runs": runs}
    tmp.write_text(json.dumps(record, default=common.jsonable) + "\n")
    tmp.replace(path)


def load_partial(path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    if saved["args"] != _run_args(args):
        raise SystemExit(
            f"--resume: {path} was written with {saved['args']}, not {_run_args(args)}; "
            "run with the same arguments, or delete the file to start over"
        )
    return list(saved["runs"])


def summarize(runs: list[dict[str, Any]], budget: str) -> dict[str, Any]:
    by = {(r["variant"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    steps_rows = [compare_steps(by["default", s], by["random", s]) for s in seeds]
    print(f"\nsteps to reach random search's best validation F1 ({budget})")
    print(common.table(steps_rows))
    ratios = [r["steps_ratio"] for r in steps_rows if r["steps_ratio"] is not None]
    minute_rows = []
    for s in sorted({r["seed"] for r in runs if r["variant"] == "hf_optuna"}):
        common_f1 = min(by["default", s]["best_val_f1"], by["hf_optuna", s]["best_val_f1"])
        minute_rows += [
            per_minute(by["default", s], common_f1),
            per_minute(by["hf_optuna", s], common_f1),
        ]
    print(
        "\nvs HF Trainer.hyperparameter_search (optuna); min_to_common_f1: minutes to the "
        "lower of the two best F1s"
    )
    print(common.table(minute_rows))
    per_minute_ratios = [
        ours["f1_per_min"] / hf["f1_per_min"]
        for ours, hf in zip(minute_rows[::2], minute_rows[1::2], strict=True)
    ]
    vs_total = [
        r["steps_ratio_vs_random_total"]
        for r in steps_rows
        if r["steps_ratio_vs_random_total"] is not None
    ]
    hf_rows = [row for s in sorted({r["seed"] for r in runs if r["variant"] == "hf_optuna"})
               for row in to_hf_best(by, s)]
    speedups = [r["hf_s_over_this"] for r in hf_rows
                if r["variant"] == "default" and r["hf_s_over_this"] is not None]
    if hf_rows:
        print("\ntime to HF's best validation F1 (s_to_hf_best; hf_s_over_this: HF's own time "
              "to it / this system's; 0 = never reached)")
        print(common.table(hf_rows))
    evo_rows = evolutionary_rows(by, seeds)
    if evo_rows:
        print("\nevolutionary searchers (+ ASHA) next to the default, same seeds; steps_to_target:"
              " steps to random search's best validation F1 (None: not reached)")
        print(common.table(evo_rows))
    best = max((r for r in runs if r["variant"] == "default"), key=lambda r: r["best_val_f1"])
    test_rows = [{"system": name, "test_macro_f1": f1} for name, f1 in PUBLISHED_TEST_F1.items()]
    test_rows.append(
        {
            "system": f"this: MiniLM-L6 + LoRA, default sweep (best of seed {best['seed']})",
            "test_macro_f1": round(100 * best["test_f1"], 1),
        }
    )
    print("\nTweetEval emotion, test macro-F1 (published, and ours)")
    print(common.table(sorted(test_rows, key=lambda r: r["test_macro_f1"])))
    reached = sum(r["steps_ratio"] is not None for r in steps_rows)
    worst_vs_total = max(vs_total) if len(vs_total) == len(steps_rows) else None
    print(
        f"\ndefault reached random's best in {reached}/{len(steps_rows)} seeds; steps to it / "
        f"random's total steps: {[round(v, 3) for v in vs_total]} (target <= 0.25 every seed); "
        f"/ random's steps to its best: median {median(ratios) if ratios else math.nan:.3f}"
    )
    if per_minute_ratios:
        print(
            "best val F1 per wall-clock minute, default / HF: "
            f"{[round(v, 2) for v in per_minute_ratios]} (target >= 2)"
        )
    return {
        "steps_rows": steps_rows,
        "targets": {
            "compute": {
                "what": "steps the default needs to reach random's best val F1 / random's "
                "total steps, worst seed",
                "value": worst_vs_total,
                "target": 0.25,
                "met": worst_vs_total is not None and worst_vs_total <= 0.25,
            },
            "sooner_than_hf": {
                "what": "HF's wall time to its best val F1 / the default's time to it, "
                "median seed (0 where the default never reached it)",
                "value": median(speedups) if speedups else None,
                "target": 2.0,
                "met": bool(speedups) and median(speedups) >= 2.0,
            },
            "vs_hf": {
                "what": "best val F1 per wall-clock minute, default / HF optuna, worst seed",
                "value": min(per_minute_ratios) if per_minute_ratios else None,
                "target": 2.0,
                "met": bool(per_minute_ratios) and min(per_minute_ratios) >= 2.0,
            },
        },
        "median_steps_ratio": median(ratios) if ratios else None,
        "seeds_reached": reached,
        "per_minute_rows": minute_rows,
        "to_hf_best_rows": hf_rows,
        "best_test_f1_by_system": {
            v: max((r["test_f1"] for r in runs if r["variant"] == v), default=None)
            for v in ("default", "random", "hf_optuna")},
        "evolutionary_rows": evo_rows,
        "best_test_f1": best["test_f1"],
        "published_test_f1": PUBLISHED_TEST_F1,
    }


if __name__ == "__main__":
    main()
