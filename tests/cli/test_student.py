"""`sweep student`: a copy of a teacher with some layers kept, and the user's mistakes with it
(an `error: ...` line, exit status 2, no traceback). CPU-only, tiny models, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tiny_models import make_tiny_causal_lm, make_tiny_encoder

from orchestrator.cli.main import main


def _sweep(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForCausalLM

    folder = make_tiny_causal_lm(tmp_path_factory.mktemp("t") / "lm", num_layers=4)
    assert AutoModelForCausalLM.from_pretrained(folder).config.num_hidden_layers == 4
    return folder


def test_every_other_layer_by_default_and_the_copy_loads(teacher: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = _sweep("student", str(teacher), "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    assert "layers [0, 2] of 4" in result.output and "smaller" in result.output
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    assert student.config.num_hidden_layers == 2
    AutoTokenizer.from_pretrained(tmp_path / "s")
    info = json.loads((tmp_path / "s" / "sweep_student.json").read_text())
    assert info["kept_layers"] == [0, 2] and info["task"] == "causal_lm"
    assert _sweep("student", str(teacher), "--keep", "1,3", "--out", str(tmp_path / "k"),
                  ).exit_code == 0
    assert json.loads((tmp_path / "k" / "sweep_student.json").read_text())["kept_layers"] == [1, 3]


@pytest.mark.parametrize(("args", "fragments"), [
    (["--keep", "0,9"], ["--keep/--layers", "0..3", "the teacher has 4"]),
    (["--keep", "2,1"], ["increasing ids"]),
    (["--layers", "5"], ["cannot keep 5 of 4 layers"]),
    (["--keep", "0", "--layers", "2"], ["--keep or --layers, not both"]),
    (["--keep", "a,b"], ["'a,b' is not an integer or a comma-separated list"]),
])
def test_bad_layer_choices(teacher: Path, tmp_path: Path, args: list[str],
                           fragments: list[str]) -> None:
    result = _sweep("student", str(teacher), *args, "--out", str(tmp_path / "s"))
    assert result.exit_code == 2, (result.output, result.exception)
    assert "error: " in result.output or "Error: " in result.output  # ours, or click's
    for fragment in fragments:
        assert fragment in result.output
    assert not (tmp_path / "s").exists()


def test_a_teacher_that_is_not_one(tmp_path: Path) -> None:
    missing = _sweep("student", str(tmp_path / "nope"), "--out", str(tmp_path / "s"))
    assert missing.exit_code == 2 and missing.output.startswith("error: ")
    assert "neither an experiment folder nor a model that loads" in missing.output



def test_a_pretrained_model_without_a_head_is_copied_too(tmp_path: Path) -> None:
    from transformers import AutoModel

    bare = _sweep("student", str(make_tiny_encoder(tmp_path / "enc")), "--keep", "1", "--out",
                  str(tmp_path / "s"))
    assert bare.exit_code == 0, bare.output
    copy = AutoModel.from_pretrained(tmp_path / "s")
    assert type(copy).__name__ == "BertModel" and copy.config.num_hidden_layers == 1
    info = json.loads((tmp_path / "s" / "sweep_student.json").read_text())
    assert info["task"] == "base model" and info["kept_layers"] == [1]
