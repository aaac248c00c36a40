"""Every benchmark's quick mode runs end to end on tiny models and writes its result file.

The Ray-based ones share one local Ray (the `local_ray` fixture) to keep the whole set near a
minute; their figures are not asserted (they are timings on a shared machine), their shape is.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import ROOT

if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))


def run_quick(name: str, out: Path) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.{name}")
    module.main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["benchmark"] == name
    assert result["command"].startswith(f"python -m benchmarks.{name} --quick")
    assert result["machine"]["cpu_count"] >= 1 and result["packages"]["ray"]
    load = result["load"]  # sampled at the start and the end at least
    assert load["samples"] >= 2 and load["loadavg_1m_min"] <= load["loadavg_1m_mean"] <= load[
        "loadavg_1m_max"]
    return result


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_checkpoint_cost_quick(tmp_path: Path) -> None:
    result = run_quick("checkpoint_cost", tmp_path / "checkpoint_cost.json")
    sizes = {(row["r"], row["targets"]): row["adapter_model_bytes"] for row in result["sizes"]}
    assert sizes[4, "q_proj/v_proj"] < sizes[8, "q_proj/v_proj"] < sizes[16, "q_proj/v_proj"]
    assert sizes[16, "q_proj/v_proj"] < sizes[16, "all-linear"]
    runs = result["time"]["runs"]
    assert all(r["checkpoints"] > 0 for r in runs["checkpoint"])
    assert all(r["checkpoints"] == 0 for r in runs["noop"])
    assert finite(result["time"]["seconds_per_checkpoint"])
    share = {(r["model"], r["r"], r["targets"]): r["adapter_share"]
             for r in result["adapter_share_by_shape"]}
    # the adapter's share falls as the model gets wider (SmolLM2-135M: 3.6%, Llama-2-7B: 0.6%)
    assert share["Llama-2-7B", 16, "all-linear"] < share["SmolLM2-135M", 16, "all-linear"] / 4


@pytest.mark.integration
def test_startup_quick(local_ray: Any, tmp_path: Path) -> None:
    from benchmarks import startup

    result = run_quick("startup", tmp_path / "startup.json")
    assert set(result["ratios"]) == {"in_process", "ray", "ray_reused_actor"}
    assert all(finite(v) for r in result["ratios"].values() for v in r.values())
    medians = result["medians"]
    ratio = medians["in-process/ours"]["to_first_step_s"] / medians["in-process/naive"][
        "to_first_step_s"]
    assert result["ratios"]["in_process"]["to_first_step"] == pytest.approx(ratio)
    assert result["target"]["met"] is (ratio <= startup.TARGET)


@pytest.mark.integration
def test_orchestration_overhead_quick(local_ray: Any, tmp_path: Path) -> None:
    result = run_quick("orchestration_overhead", tmp_path / "orchestration_overhead.json")
    assert set(result["ratios"]) == {"reuse_actors=False", "reuse_actors=True"}
    for runs in result["runs"].values():
        assert runs[0]["trials"] == result["trials"]
        assert finite(runs[0]["wall_s"]) and runs[0]["ratio"] > 0


@pytest.mark.integration
def test_search_efficiency_quick(local_ray: Any, tmp_path: Path) -> None:
    result = run_quick("search_efficiency", tmp_path / "search_efficiency.json")
    variants = {run["variant"] for run in result["runs"]}
    assert variants == {"default", "random", "hf_optuna", "cmaes", "nsga2"}
    assert len(result["steps_rows"]) == 1 and len(result["per_minute_rows"]) == 2
    evo = {row["variant"]: row for row in result["evolutionary_rows"]}
    assert set(evo) == {"default", "cmaes", "nsga2"}
    by_variant = {run["variant"]: run for run in result["runs"]}
    assert by_variant["default"]["algorithm"] == "hyperopt"
    for name in ("cmaes", "nsga2"):  # each ran as its own search algorithm, to completion
        assert by_variant[name]["algorithm"] == name
        assert evo[name]["best_val_f1"] == by_variant[name]["best_val_f1"]
        assert 0 <= evo[name]["best_val_f1"] <= 1 and evo[name]["total_steps"] > 0
    assert 0 <= result["best_test_f1"] <= 1
    assert all(run["total_steps"] > 0 for run in result["runs"])
    to_hf = {row["variant"]: row for row in result["to_hf_best_rows"]}
    assert set(to_hf) == {"default", "random", "hf_optuna"}
    assert to_hf["hf_optuna"]["hf_s_over_this"] == 1.0
    assert result["targets"]["sooner_than_hf"]["value"] == to_hf["default"]["hf_s_over_this"]
    assert not (tmp_path / "search_efficiency.partial.json").exists()  # removed once complete


def test_search_efficiency_partial_runs_round_trip(tmp_path: Path) -> None:
    import argparse

    from benchmarks.search_efficiency import load_partial, save_partial

    args = argparse.Namespace(seeds=3, trials=12, steps=90, out=tmp_path / "x.json", resume=True)
    path = tmp_path / "x.partial.json"
    assert load_partial(path, args) == []  # nothing saved yet: run everything
    runs = [{"variant": "default", "seed": 0, "best_val_f1": 0.67, "reports": [{"t_s": 1.5}]}]
    save_partial(path, args, runs)
    assert load_partial(path, argparse.Namespace(**{**vars(args), "out": None})) == runs
    other_budget = argparse.Namespace(**{**vars(args), "steps": 24})
    with pytest.raises(SystemExit, match="steps.: 24"):  # a run of another budget is not kept
        load_partial(path, other_budget)


def test_time_to_hf_best_of_hand_made_runs() -> None:
    from benchmarks.search_efficiency import to_hf_best

    def run(variant: str, reports: list[tuple[float, float]]) -> dict:
        return {"variant": variant, "seed": 0, "wall_s": reports[-1][0], "test_f1": 0.5,
                "best_val_f1": max(f for _, f in reports),
                "reports": [{"t_s": t, "f1": f, "cum_steps": 1} for t, f in reports]}

    by = {("hf_optuna", 0): run("hf_optuna", [(10, 0.4), (60, 0.6), (90, 0.5)]),
          ("default", 0): run("default", [(5, 0.3), (20, 0.61)]),
          ("random", 0): run("random", [(30, 0.55)])}
    rows = {r["variant"]: r for r in to_hf_best(by, 0)}
    assert rows["default"]["s_to_hf_best"] == 20 and rows["default"]["hf_s_over_this"] == 3.0
    assert rows["random"]["s_to_hf_best"] is None and rows["random"]["hf_s_over_this"] == 0.0
    assert rows["hf_optuna"]["s_to_hf_best"] == 60 and rows["hf_optuna"]["hf_s_over_this"] == 1


def test_distill_cost_quick(tmp_path: Path) -> None:
    result = run_quick("distill_cost", tmp_path / "distill_cost.json")
    assert set(result["wall_s"]) == {"shared", "per_trial", "per_step"}
    assert all(finite(v) for v in result["wall_s"].values())
    settings = result["settings"]
    assert settings["student_parameters"] < settings["teacher_parameters"]
