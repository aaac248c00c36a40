"""After the sweep: `sweep export`, `sweep evaluate` and `sweep soup`.

`orchestrator.cli.main` adds them with `register(main)`. EXPERIMENT is a folder or s3:// URI made by
`sweep run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from orchestrator.cli.errors import user_errors

_TEST_HELP = ("Test split file (format of data.train) to use when the sweep config has no "
              "data.test, or instead of it.")


def _run(action: Callable[[], Any]) -> Any:
    """`action()`; a bad request (a `UserError`: no such experiment, no checkpoint, an --out
    folder in use, options that do not fit the sweep) is reported as `error: ...`."""
    with user_errors():
        return action()


@click.command("export")
@click.argument("experiment")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Empty folder to write the model to.")
@click.option("--merge", is_flag=True, help="Merge the LoRA adapter into the base model: a "
              "plain transformers folder (bigger; no peft needed to load it).")
@click.option("--trial", "trial_id", default=None,
              help="Export this trial's best checkpoint instead of the sweep's best trial.")
@click.option("--overwrite", is_flag=True, help="Replace what --out already holds.")
def export_command(experiment: str, out: str, merge: bool, trial_id: str | None,
                   overwrite: bool) -> None:
    """Export the best trial of EXPERIMENT: its LoRA adapter in peft format (or, with --merge,
    the merged full model), tokenizer, README and sweep_export.json."""
    from orchestrator.experiment.layout import EXPORT_INFO_FILE
    from orchestrator.post.export import export_best

    folder = _run(lambda: export_best(experiment, out, merge, trial_id=trial_id,
                                      overwrite=overwrite))
    click.echo(f"Exported to: {folder}\n  (how to load it: {folder / 'README.md'}; "
               f"settings and metrics: {folder / EXPORT_INFO_FILE})")


@click.command("evaluate")
@click.argument("experiment")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Evaluate the best K trials (by the sweep metric on validation).")
@click.option("--test", "test_data", type=click.Path(exists=True, dir_okay=False),
              default=None, help=_TEST_HELP)
@click.option("--no-write", is_flag=True, help="Do not write test_results.json.")
def evaluate_command(experiment: str, top_k: int, test_data: str | None,
                     no_write: bool) -> None:
    """Score the top-k trials of EXPERIMENT once on the test split; print validation and test
    metrics side by side and write test_results.json into the experiment."""
    from orchestrator.experiment.layout import TEST_RESULTS_FILE
    from orchestrator.experiment.storage import open_storage
    from orchestrator.post.final_eval import evaluate_test_split

    report = _run(lambda: evaluate_test_split(experiment, top_k, test_data=test_data,
                                              write=not no_write))
    click.echo(report.summary())
    if not no_write:
        click.echo(f"Written: {open_storage(report.experiment_path).uri_of(TEST_RESULTS_FILE)}")


def _numbers(cast: type, kind: str, example: str) -> Any:
    """A click callback: `"0.25,0.5"` -> `[cast(v), ...]`, or a BadParameter naming the value."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> list | None:
        if value is None:
            return None
        try:
            return [cast(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not {kind} or a comma-separated list of "
                                     f"them; e.g. {example}") from None

    return callback


_floats = _numbers(float, "a number", "0.5 or 0.25,0.5,0.75")
_ints = _numbers(int, "an integer", "2 or 0,2,4")


def _ids(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@click.command("soup")
@click.argument("experiment")
@click.option("--top-k", type=click.IntRange(min=2), default=None,
              help="Ingredients: the best K trials.  [default: 3; slerp: 2]")
@click.option("--method", type=click.Choice(["uniform", "greedy", "ties", "slerp"]),
              default="uniform", show_default=True, help="uniform: average every update; "
              "greedy: add the next-best trial only if validation improves; ties: TIES-merging "
              "of the LoRA updates; slerp: spherical interpolation of two trials' updates.")
@click.option("--density", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.2,
              show_default=True, help="ties: share of each update kept (higher: closer to "
              "uniform, more interference).")
@click.option("--t", "t_values", default=None, callback=_floats, metavar="T[,T...]",
              help="slerp: where between the two trials (0: the first, 1: the second); a list "
              "(0.25,0.5,0.75) scores each on validation and keeps the best.  [default: 0.5]")
@click.option("--trials", default=None, callback=_ids, metavar="A,B",
              help="slerp: the two trial ids to interpolate (default: the sweep's top 2).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Export the soup here (same layout as `sweep export --merge`).")
@click.option("--test", "test_data", type=click.Path(exists=True, dir_okay=False),
              default=None, help=_TEST_HELP)
@click.option("--overwrite", is_flag=True, help="Replace what --out already holds.")
def soup_command(experiment: str, top_k: int | None, method: str, density: float,
                 t_values: list[float] | None, trials: list[str] | None, out: str | None,
                 test_data: str | None, overwrite: bool) -> None:
    """Combine the top-k trials of EXPERIMENT into one model (a model soup), or interpolate
    two of them (slerp), and compare it with the best single trial on validation and test."""
    from orchestrator.post.soup import make_soup

    soup = _run(lambda: make_soup(experiment, top_k, method, out=out, density=density,
                                  t=t_values, trials=trials, test_data=test_data,
                                  overwrite=overwrite))
    click.echo(soup.summary())


@click.command("student")
@click.argument("teacher")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Empty folder to write the student to.")
@click.option("--keep", default=None, callback=_ints, metavar="I[,I...]",
              help="Layer ids to keep, increasing from 0 (e.g. 0,2,4).")
@click.option("--layers", type=click.IntRange(min=1), default=None,
              help="How many layers to keep, spread evenly from the first to the last.")
@click.option("--trial", "trial_id", default=None,
              help="With an experiment as TEACHER: this trial instead of the best.")
@click.option("--overwrite", is_flag=True, help="Replace what --out already holds.")
def student_command(teacher: str, out: str, keep: list[int] | None, layers: int | None,
                    trial_id: str | None, overwrite: bool) -> None:
    """A smaller copy of TEACHER (a model folder, hub id, or an experiment's best trial) with
    some of its layers kept (default: every other one), to distil into with `distill:`."""
    from orchestrator.post.student import make_student

    folder, info = _run(lambda: make_student(teacher, out, keep=keep, layers=layers,
                                             trial_id=trial_id, overwrite=overwrite))
    click.echo(f"Student: {folder}\n  layers {info['kept_layers']} of {info['teacher_layers']}; "
               f"{info['student_parameters'] / 1e6:.1f}M parameters (teacher "
               f"{info['parameters'] / 1e6:.1f}M, "
               f"{1 - info['student_parameters'] / info['parameters']:.0%} smaller)\n"
               f"  distil into it: model.path: {folder} and distill.teacher: {teacher}")


def register(group: click.Group) -> None:
    """Add `export`, `evaluate`, `soup` and `student` to the `sweep` command group."""
    for command in (export_command, evaluate_command, soup_command, student_command):
        group.add_command(command)
