"""The fine-tuning loop both trainables share: setup -> fit -> validate, visible top to bottom.

`fit` knows nothing about Ray: it takes a `report(metrics, checkpoint_dir)` callback and an
optional checkpoint folder to resume from, so it runs the same in a Tune trial, in a test, or in
a plain script. Given a `Rank` of a data-parallel group (see `distributed`), every rank runs it:
rank 0 restores, evaluates, checkpoints and reports; the others train their share, call
`report({}, None)` at the same points (Ray Train's report is collective) and wait. With
`strategy: fsdp` (see `fsdp`) the model is sharded, so every rank also takes part in restoring,
evaluating and gathering the checkpoint, which rank 0 writes.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainables import checkpointing, distill, distributed, fsdp, modeling
from trainables.checkpointing import STATE_FILE, Progress
from trainables.config import TrainConfig, TrialSpec
from trainables.data import PreparedData
from trainables.distributed import SINGLE, Rank
from trainables.evaluation import collate, evaluate
from trainables.generation import generation_metrics
from trainables.runtime import PeakMemory, pick_device, seed_everything, watch_for_release

# report(metrics, checkpoint folder): rank 0's evaluation; ({}, None) on the other ranks. It may
# return False to stop training (the scheduler stopped the trial); rank 0's answer counts.
Report = Callable[[dict[str, float], Path | None], bool | None]


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Setup:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    device: torch.device
    pad_id: int
    total_steps: int
    autocast: Callable[[], Any] | None


def optimizer_steps(train: TrainConfig, workers: int, num_train_examples: int) -> int:
    """Optimizer steps of a trial: `max_steps`, else epochs over train at the global batch."""
    if train.max_steps is not None:
        return train.max_steps
    per_epoch = math.ceil(num_train_examples / (train.batch_size * workers))
    return max(1, math.ceil(train.epochs * per_epoch / train.gradient_accumulation_steps))


def total_optimizer_steps(spec: TrialSpec, num_train_examples: int) -> int:
    return optimizer_steps(spec.train, spec.workers, num_train_examples)


def _autocast(precision: str, device: torch.device) -> Callable[[], Any] | None:
    if precision == "fp32":
        return None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def setup(spec: TrialSpec, data: PreparedData, tokenizer_pad_id: int, *,
          sharded: bool = False) -> Setup:
    """`sharded`: shard the model over the process group (FSDP) before building the optimizer,
    which then holds this rank's shards only."""
    train = spec.train
    seed_everything(train.seed)
    device = pick_device()
    model = modeling.load_model(
        spec.model,
        spec.task,
        num_labels=data.num_labels,
        dropout=train.dropout,
        pad_token_id=tokenizer_pad_id,
        label_names=data.label_names,
    )
    if train.gradient_checkpointing:
        # FSDP re-gathers a block's weights in the recomputation: torch's non-reentrant kind.
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}} if sharded else {}
        model.gradient_checkpointing_enable(**kwargs)  # type: ignore[operator]
        if train.finetune == "lora":
            model.enable_input_require_grads()  # type: ignore[operator]
    if train.finetune == "lora":
        model = modeling.apply_lora(model, spec.lora, spec.task)
    if sharded:
        fsdp.shard_model(model, device)
    else:
        model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        eps=train.adam_epsilon,
        weight_decay=train.weight_decay,
    )
    from transformers import get_scheduler

    total = total_optimizer_steps(spec, len(data.train))
    scheduler = get_scheduler(
        train.lr_schedule,
        optimizer,
        num_warmup_steps=round(train.warmup_ratio * total),
        num_training_steps=total,
    )
    scaler = torch.amp.GradScaler("cuda") if train.precision == "fp16" else None
    return Setup(
        model, optimizer, scheduler, scaler, device, tokenizer_pad_id, total,
        _autocast(train.precision, device),
    )


def _apply_current_hyperparameters(s: Setup, spec: TrialSpec) -> None:
    """After restoring (e.g. PBT exploit), the searched values of *this* config win."""
    s.scheduler.base_lrs = [spec.train.learning_rate for _ in s.optimizer.param_groups]
    for group in s.optimizer.param_groups:
        group["initial_lr"] = spec.train.learning_rate
        group["weight_decay"] = spec.train.weight_decay
    factor = s.scheduler.lr_lambdas[0](s.scheduler.last_epoch)
    for group in s.optimizer.param_groups:
        group["lr"] = spec.train.learning_rate * factor


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    """Shuffle order of one epoch, a pure function of (seed, epoch) so resumes replay it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


def _restore(s: Setup, spec: TrialSpec, resume_from: Path | None, rank: Rank) -> Progress:
    """Rank 0 loads the checkpoint and sends the training state to the other ranks (they cannot
    see its local copy); DDP then copies rank 0's trainable weights to them."""
    state: bytes | None = None
    if rank.is_main and resume_from is not None:
        checkpointing.load_weights(resume_from, s.model, spec.train.finetune)
        state = (resume_from / STATE_FILE).read_bytes()
    state = distributed.broadcast_object(state, rank)
    if state is None:
        distributed.seed_rank(spec.train.seed, rank)
        return Progress()
    progress = checkpointing.load_state(state, s.optimizer, s.scheduler, s.scaler, rank.rank)
    _apply_current_hyperparameters(s, spec)
    return progress


def _restore_sharded(s: Setup, spec: TrialSpec, resume_from: Path | None,
                     rank: Rank) -> Progress:
    """FSDP: rank 0 reads the full weights and optimizer state and broadcasts them into every
    rank's shards; the rest of the state (schedule, progress, RNG) goes to all ranks whole."""
    weights, optimizer_state, state = None, None, None
    if rank.is_main and resume_from is not None:
        weights = checkpointing.read_full_weights(resume_from, s.model)
        state = checkpointing.read_state(resume_from)
        optimizer_state = state.pop("optimizer")
    state = distributed.broadcast_object(state, rank)
    if state is None:
        distributed.seed_rank(spec.train.seed, rank)
        return Progress()
    fsdp.load_model_state(s.model, weights, rank)
    fsdp.load_optimizer_state(s.model, s.optimizer, optimizer_state, rank)
    progress = checkpointing.load_state(state, None, s.scheduler, s.scaler, rank.rank)
    _apply_current_hyperparameters(s, spec)
    return progress


def fit(
    spec: TrialSpec,
    data: PreparedData,
    pad_id: int,
    report: Report,
    resume_from: Path | None = None,
    rank: Rank = SINGLE,
) -> dict[str, float]:
    memory = PeakMemory(pick_device())  # from before the model loads
    sharded = spec.strategy == "fsdp"  # needs a process group (ranks of a Ray Train run)
    s = setup(spec, data, pad_id, sharded=sharded)
    watch_for_release(s.model)
    train = spec.train
    progress = (_restore_sharded if sharded else _restore)(s, spec, resume_from, rank)
    forward = (distributed.wrap(s.model, s.device, static_graph=train.gradient_checkpointing)
               if rank.distributed and not sharded else s.model)
    global_batch = train.batch_size * rank.world_size
    eval_batch = train.eval_batch_size or train.batch_size

    generation = train.generation_eval if data.generation_validation else None
    tokenizer = modeling.load_tokenizer(spec.model) if generation and rank.is_main else None

    def score(examples: list[dict[str, Any]], samples: list[dict[str, Any]]
              ) -> dict[str, float]:
        metrics = evaluate(
            s.model, examples, task=spec.task, batch_size=eval_batch, pad_id=pad_id,
            device=s.device, num_labels=data.num_labels, autocast=s.autocast,
            label_names=data.label_names, positive_label_id=data.positive_label_id,
        )
        if generation is not None:
            metrics |= generation_metrics(s.model, samples, tokenizer, generation,
                                          batch_size=eval_batch, device=s.device,
                                          autocast=s.autocast)
        return metrics

    def validate() -> dict[str, float]:
        metrics = score(data.validation, data.generation_validation)
        if train.report_test_metrics and data.test:
            # eval_x -> test_x: the same metrics on the test split, for learning-curve tables.
            metrics |= {"test_" + k.removeprefix("eval_"): v
                        for k, v in score(data.test, data.generation_test).items()}
        return metrics

    s.model.train()
    window_loss, window_batches, window_tokens, window_time = 0.0, 0, 0, 0.0
    last: dict[str, float] = {}
    accum = train.gradient_accumulation_steps
    micro_in_step = 0
    while progress.step < s.total_steps:
        order = epoch_order(len(data.train), train.seed, progress.epoch)
        starts = range(progress.batch_in_epoch * global_batch, len(order), global_batch)
        for start in starts:
            t0 = time.perf_counter()
            chunk = [data.train[i] for i in order[start : start + global_batch]]
            examples, weight = distributed.shard(chunk, rank, spec.task)
            batch = {k: v.to(s.device) for k, v in collate(examples, pad_id, spec.task).items()}
            targets = ({k: v.to(s.device)
                        for k, v in distill.collate_targets(examples, spec.task).items()}
                       if spec.distill else {})
            # Gradients are all-reduced only on the micro-batch that completes a step.
            no_sync = rank.distributed and micro_in_step + 1 < accum
            sync = (fsdp.no_sync(s.model, no_sync) if sharded
                    else forward.no_sync() if no_sync  # type: ignore[operator]
                    else contextlib.nullcontext())
            with sync:
                with s.autocast() if s.autocast else contextlib.nullcontext():
                    out = forward(**batch)
                    loss = (distill.distill_loss(out["logits"], batch["labels"], targets,
                                                 out["loss"], spec.distill, spec.task)
                            if spec.distill is not None else out["loss"])
                mean_loss = distributed.global_loss(loss, weight, rank)
                if not math.isfinite(mean_loss):  # every rank sees it, so all stop together
                    raise DivergedError(
                        f"training loss is {mean_loss} at step {progress.step} "
                        f"(learning_rate={train.learning_rate}); the trial diverged"
                    )
                scaled = (loss * weight if rank.distributed else loss) / accum
                (s.scaler.scale(scaled) if s.scaler else scaled).backward()
            progress.batch_in_epoch += 1
            tokens = sum(len(e["input_ids"]) for e in chunk)  # every rank's tokens
            progress.tokens_seen += tokens
            window_tokens += tokens
            window_loss += mean_loss
            window_batches += 1
            micro_in_step += 1
            if micro_in_step == accum:
                micro_in_step = 0
                _optimizer_step(s, train.max_grad_norm)
                progress.step += 1
                memory.sample()
            window_time += time.perf_counter() - t0
            if micro_in_step == 0 and (
                progress.step % train.eval_every_steps == 0 or progress.step >= s.total_steps
            ):
                rng_per_rank = (distributed.gather_objects(checkpointing.rng_state(), rank)
                                if rank.distributed else None)
                # FSDP: every rank runs the evaluation's forward passes and gathers the state.
                metrics = validate() if rank.is_main or sharded else {}
                model_state, optimizer_state = ((fsdp.gather_model_state(s.model),
                                                 fsdp.gather_optimizer_state(s.model, s.optimizer))
                                                if sharded else (None, None))
                if rank.is_main:
                    last = {
                        **metrics,
                        "train_loss": window_loss / max(window_batches, 1),
                        "step": progress.step,
                        "total_steps": s.total_steps,
                        "tokens_seen": progress.tokens_seen,
                        "tokens_per_s": window_tokens / max(window_time, 1e-9),
                        "epoch": progress.epoch + progress.batch_in_epoch * global_batch
                        / len(data.train),
                        "learning_rate": s.scheduler.get_last_lr()[0],
                        "world_size": rank.world_size,
                        **memory.metrics(),
                    }
                    with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
                        checkpointing.save(
                            Path(tmp), model=s.model, finetune=train.finetune,
                            optimizer=s.optimizer, scheduler=s.scheduler, progress=progress,
                            metrics=last, spec=spec.model_dump(), scaler=s.scaler,
                            rng_per_rank=rng_per_rank, model_state=model_state,
                            optimizer_state=optimizer_state,
                        )
                        go_on = report(last, Path(tmp))
                else:
                    go_on = report({}, None)
                # The others wait here while rank 0 evaluates, saves and hears back.
                if distributed.broadcast_object(go_on, rank) is False:
                    return last
                window_loss, window_batches, window_tokens, window_time = 0.0, 0, 0, 0.0
            if progress.step >= s.total_steps:
                break
        else:
            progress.epoch += 1
            progress.batch_in_epoch = 0
    return last


def _optimizer_step(s: Setup, max_grad_norm: float | None) -> None:
    if s.scaler is not None:
        s.scaler.unscale_(s.optimizer)
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(
            [p for p in s.model.parameters() if p.requires_grad], max_grad_norm
        )
    if s.scaler is not None:
        s.scaler.step(s.optimizer)
        s.scaler.update()
    else:
        s.optimizer.step()
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
