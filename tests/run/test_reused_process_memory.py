"""A reused trial process (Tune's `reuse_actors`, the product's default) releases each trial's
model and optimizer: five trials run one after another in one process, and the fifth one's
peak memory is within 10% of the first one's.

The model (12.7M parameters, 51 MB of fp32 weights, plus AdamW state on the adapters and the
activations) is large next to what a leak would have to hide behind: keeping each old model
alive would add ~200 MB by the fifth trial, on a process of ~700 MB (checked by hand with a
module-level list in `trainables/loop.py` holding every trial's model: the fifth trial's
peak then exceeded 1.1x the first's).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import lm_config
from tiny_models import make_tiny_causal_lm

from orchestrator import launch

pytestmark = pytest.mark.integration

TRIALS = 5


@pytest.fixture(scope="module")
def mid_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("mid-lm"), hidden_size=512,
                               intermediate_size=1536, num_layers=4)


def test_fifth_reused_trial_peaks_like_the_first(local_ray, mid_lm_dir: Path,
                                                  tmp_path: Path) -> None:
    config = lm_config(
        mid_lm_dir,
        name="reused-memory",
        storage_path=str(tmp_path),
        train={"batch_size": 8, "max_steps": 4, "eval_every_steps": 2, "seed": 0,
               "torch_threads": 1},
        lora={"r": 8, "alpha": 16, "target_modules": "all-linear"},
        search={"algorithm": "random", "seed": 0, "max_concurrent_trials": 1},  # one slot
        scheduler={"type": "fifo"},
        resources={"cpus_per_trial": 1, "reuse_actors": True},
        num_samples=TRIALS,
        baseline=False,
        keep_checkpoints_per_trial=1,
    )
    result = launch(config, live=False)
    # Tune numbers trials in creation order; with one slot that is also the order they ran.
    histories = [result.histories[t] for t in sorted(result.histories)]
    assert len(histories) == TRIALS and all(len(h) == 2 for h in histories)
    pids = {int(pid) for h in histories for pid in h["pid"]}
    assert len(pids) == 1, f"the trials ran in {len(pids)} processes, so none was reused"
    peaks = [float(h["peak_rss_mb"].max()) for h in histories]
    assert peaks[0] > 300, peaks  # MiB: torch, transformers, peft, Ray and the model
    assert peaks[-1] <= 1.1 * peaks[0], f"peak RSS per trial (MiB), in order: {peaks}"
    # the table `sweep results` shows
    assert result.trials["peak_rss_mb"].tolist() == pytest.approx(
        [peaks[sorted(result.histories).index(t)] for t in result.trials["trial_id"]])
