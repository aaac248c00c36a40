"""What `sweep evaluate --test FILE` (and `soup --test`) is given, checked before any model is
scored: CPU-only, no Ray, a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import DATES, lm_config

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.post.final_eval import load_eval_data


@pytest.mark.parametrize(("split", "use"), [("train", "trained on"),
                                            ("validation", "selected the trials")])
def test_a_test_file_the_sweep_used_is_refused_naming_the_option(
        tiny_lm_dir: Path, tmp_path: Path, split: str, use: str) -> None:
    """Was a pydantic ValidationError (a traceback): assigning data.test re-ran the config's
    same-file rule."""
    config = load_config(lm_config(tiny_lm_dir))
    with pytest.raises(ConfigError) as info:
        load_eval_data(config, test_data=str(DATES / f"{split}.jsonl"))
    message, given = str(info.value), DATES / f"{split}.jsonl"
    assert f"--test / test_data: '{given}' is the sweep's data.{split}" in message
    assert use in message and "give a held-out file" in message


def test_a_held_out_test_file_is_read(tiny_lm_dir: Path) -> None:
    config = load_config(lm_config(tiny_lm_dir))
    data = load_eval_data(config, test_data=str(DATES / "test.jsonl"))
    assert data.has_test and data.config.data.test == str(DATES / "test.jsonl")
    assert config.data.test is None  # the caller's config is left as it was
