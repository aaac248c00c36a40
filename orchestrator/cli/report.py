"""`sweep report EXPERIMENT`: the after-sweep HTML report, as a command of the `sweep` CLI.

`orchestrator.cli.main` adds it with `register(main)`.
"""

from __future__ import annotations

import click

from orchestrator.cli.errors import user_errors


@click.command("report")
@click.argument("experiment")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HTML file to write. Default: report.html in the experiment folder "
              "(for s3:// experiments, NAME-report.html in the current folder).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows in the best-trials table.")
@click.option("--forgetting", is_flag=True,
              help="Also compare the best model's loss on general English text with the base "
              "model's (causal LM only; loads both models).")
@click.option("--general-text", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text for --forgetting, one passage per line. Default: the sample shipped "
              "with the package.")
def report(experiment: str, out: str | None, top: int, forgetting: bool,
           general_text: str | None) -> None:
    """Write one self-contained HTML report of EXPERIMENT (a folder or s3:// URI made by
    `sweep run`): learning curves, hyperparameters vs the metric, their importance, the best
    trials, compute saved by early stopping, and quality checks."""
    from orchestrator.post.report import write_report

    with user_errors():
        path = write_report(experiment, out, top=top, forgetting=forgetting,
                            general_text=general_text)
    click.echo(f"Report: {path}")


def register(group: click.Group) -> None:
    """Add `report` to the `sweep` command group."""
    group.add_command(report)
