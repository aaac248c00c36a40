"""Data-parallel settings: config rules with messages that name the field and the fix (DDP and
FSDP), the preflight check that a trial's workers fit the cluster under its placement strategy,
how many such trials run at once, and the sharding rule that makes W workers train like one
process with W times the batch."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from orchestrator.run.launch import max_concurrent_trials
from orchestrator.run.preflight import check_resources, groups_that_fit
from trainables.distributed import Rank, loss_items, shard


@pytest.mark.parametrize(("gpus", "kind"), [(0.5, "fractional"), (2, "several")])
def test_workers_need_whole_single_gpus(make_raw, config_error, mentions, gpus: float,
                                        kind: str) -> None:
    error = config_error(make_raw(resources={"workers_per_trial": 2, "gpus_per_trial": gpus}))
    mentions(str(error), f"resources.gpus_per_trial: {gpus}", kind,
             "resources.workers_per_trial: 2", "NCCL", "gpus_per_trial: 1",
             "workers_per_trial: 1 to pack small trials")


def test_several_gpus_in_one_worker_point_to_workers(make_raw, config_error, mentions) -> None:
    error = config_error(make_raw(resources={"gpus_per_trial": 4}))
    mentions(str(error), "resources.gpus_per_trial: 4", "train on one",
             "workers_per_trial: 4 and gpus_per_trial: 1")


@pytest.mark.parametrize(("patch", "fragments"), [
    ({"workers_per_trial": 0}, ["resources.workers_per_trial", "greater than or equal to 1"]),
    ({"placement_strategy": "PACKED"}, ["resources.placement_strategy", "PACK", "STRICT_SPREAD"]),
])
def test_bad_worker_fields_are_named(make_raw, config_error, mentions, patch: dict,
                                     fragments: list[str]) -> None:
    mentions(str(config_error(make_raw(resources=patch))), *fragments)


@pytest.mark.parametrize("resources", [
    {"workers_per_trial": 4, "gpus_per_trial": 1, "placement_strategy": "STRICT_SPREAD"},
    {"workers_per_trial": 1, "gpus_per_trial": 0.25},  # packing small trials is still fine
    {"workers_per_trial": 2, "gpus_per_trial": 0},
])
def test_good_worker_settings_load(make_config, resources: dict) -> None:
    assert make_config(resources=resources).resources.workers_per_trial == resources[
        "workers_per_trial"]


def _nodes(*cpus_gpus: tuple[float, float]) -> list[dict[str, Any]]:
    return [{"Alive": True, "Resources": {"CPU": c, "GPU": g}} for c, g in cpus_gpus]


@pytest.mark.parametrize(("resources", "nodes", "fragments"), [
    ({"workers_per_trial": 2, "placement_strategy": "STRICT_SPREAD"}, _nodes((8, 0)),
     ["need 2 different nodes", "only 1 alive nodes fit a worker", "use SPREAD or PACK"]),
    ({"workers_per_trial": 2, "placement_strategy": "STRICT_PACK"}, _nodes((1, 0), (1, 0)),
     ["need one node that holds them all", "the largest holds 1", "use PACK"]),
    ({"workers_per_trial": 3}, _nodes((1, 0), (1, 0)),
     ["resources.workers_per_trial: 3", "whole cluster holds 2"]),
    ({"workers_per_trial": 9, "gpus_per_trial": 1, "cpus_per_trial": 2},
     _nodes((64, 4), (64, 4)), ["workers_per_trial: 9", "whole cluster holds 8"]),
    ({"workers_per_trial": 5, "gpus_per_trial": 1, "cpus_per_trial": 8},  # CPUs bind first
     _nodes((16, 4), (16, 4)), ["whole cluster holds 4"]),
])
def test_preflight_refuses_groups_that_never_fit(make_config, resources: dict,
                                                 nodes: list[dict], fragments: list[str],
                                                 mentions) -> None:
    problems = check_resources(make_config(resources=resources), nodes)
    assert len(problems) == 1, problems
    mentions(problems[0], *fragments)


@pytest.mark.parametrize(("resources", "nodes"), [
    ({"workers_per_trial": 2}, _nodes((1, 0), (1, 0))),  # PACK may span nodes
    ({"workers_per_trial": 2, "placement_strategy": "STRICT_SPREAD"}, _nodes((1, 0), (1, 0))),
    ({"workers_per_trial": 8, "gpus_per_trial": 1, "placement_strategy": "STRICT_PACK"},
     _nodes((96, 8))),
])
def test_preflight_accepts_groups_that_fit(make_config, resources: dict,
                                           nodes: list[dict]) -> None:
    assert check_resources(make_config(resources=resources), nodes) == []


def _examples(lengths: list[int]) -> list[dict[str, Any]]:
    return [{"input_ids": [1] * n, "labels": [-100] + [1] * (n - 1)} for n in lengths]


@pytest.mark.parametrize("task", ["sequence_classification", "causal_lm"])
@pytest.mark.parametrize("lengths", [[3, 5, 7, 9, 4, 6, 8, 2], [3, 5, 7], [4]])
def test_weighted_shard_losses_average_to_the_global_mean(task: str, lengths: list[int]) -> None:
    """DDP averages rank gradients; with these weights that average is the gradient of the mean
    loss over the whole global batch (per example, or per predicted token for causal LMs)."""
    chunk = _examples(lengths)
    per_item = torch.arange(1.0, 1 + loss_items(chunk, task))  # a distinct loss per item
    global_mean = per_item.mean()
    world = 3
    seen, averaged, offset = [], 0.0, 0
    for r in range(world):
        local, weight = shard(chunk, Rank(r, world), task)
        n = loss_items(local, task) if weight else 0
        if n:
            seen += local
            averaged += float(per_item[offset : offset + n].mean()) * weight / world
            offset += n
        else:
            assert weight == 0.0 and local == chunk[:1]  # an empty share still runs, weightless
    assert seen == chunk  # every example once, in order
    assert averaged == pytest.approx(float(global_mean), rel=1e-12)


@pytest.mark.parametrize(("patch", "fragments"), [
    ({"resources": {"strategy": "fsdp"}, "train": {"finetune": "full"}},
     ["resources.strategy: fsdp", "workers_per_trial is 1", "nothing to shard over",
      "workers_per_trial: 2 or more, or strategy: ddp"]),
    ({"resources": {"strategy": "fsdp", "workers_per_trial": 2}},
     ["resources.strategy: fsdp is for train.finetune: full", "LoRA", "strategy: ddp"]),
    ({"resources": {"strategy": "fsdp", "workers_per_trial": 2}, "train": {"finetune": "full"},
      "search_space": {"train.finetune": {"type": "choice", "values": ["lora", "full"]}}},
     ["resources.strategy: fsdp is for train.finetune: full"]),
    ({"resources": {"strategy": "fsdp", "workers_per_trial": 2, "gpus_per_trial": 1},
      "train": {"finetune": "full", "precision": "fp16"}},
     ["train.precision: fp16 does not work with resources.strategy: fsdp", "use bf16"]),
    ({"resources": {"strategy": "zero3"}}, ["resources.strategy", "ddp", "fsdp"]),
])
def test_fsdp_rules_name_the_fields_and_the_fix(make_raw, config_error, mentions, patch: dict,
                                                fragments: list[str]) -> None:
    mentions(str(config_error(make_raw(**patch))), *fragments)


def test_fsdp_full_finetuning_on_two_workers_loads(make_config) -> None:
    config = make_config(resources={"strategy": "fsdp", "workers_per_trial": 2},
                         train={"finetune": "full", "precision": "bf16"})
    assert config.resources.strategy == "fsdp"


@pytest.mark.parametrize(("resources", "nodes", "groups"), [
    ({"workers_per_trial": 2}, _nodes((2, 0)), 1),  # this machine: one pair at a time
    ({"workers_per_trial": 2}, _nodes((1, 0), (1, 0)), 1),  # PACK may span nodes
    ({"workers_per_trial": 2, "placement_strategy": "STRICT_PACK"}, _nodes((3, 0), (3, 0)), 2),
    ({"workers_per_trial": 2, "placement_strategy": "STRICT_SPREAD"}, _nodes((4, 0), (1, 0)), 1),
    ({"workers_per_trial": 2, "placement_strategy": "STRICT_SPREAD"},
     _nodes((2, 0), (2, 0), (2, 0)), 3),
    ({"workers_per_trial": 4, "gpus_per_trial": 1, "cpus_per_trial": 8},
     _nodes((96, 8), (96, 8)), 4),
])
def test_data_parallel_trials_run_as_many_at_once_as_worker_groups_fit(
        make_config, resources: dict, nodes: list[dict], groups: int) -> None:
    config = make_config(resources=resources)
    assert groups_that_fit(config, nodes) == groups
    # A trial's own process holds no CPU, so this caps Tune's concurrency ...
    assert max_concurrent_trials(config, nodes) == groups
    # ... under the user's own cap, and a one-worker trial's resources cap it as before.
    capped = make_config(resources=resources, search={"max_concurrent_trials": 1})
    assert max_concurrent_trials(capped, nodes) == 1
    assert max_concurrent_trials(make_config(), nodes) is None


def test_data_parallel_trials_do_not_reuse_processes(make_raw, config_error, mentions) -> None:
    error = config_error(make_raw(resources={"workers_per_trial": 2, "reuse_actors": True}))
    mentions(str(error), "resources.reuse_actors: true", "workers_per_trial > 1",
             "drop reuse_actors")
