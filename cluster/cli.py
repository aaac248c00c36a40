"""`sweep submit/status/logs/stop/list`: sweeps as Ray Jobs on a cluster (`cluster.jobs`).

    sweep submit examples/quickstart.yaml --address http://HEAD:8265   # prints the job id
    sweep logs JOB_ID --follow
    sweep stop JOB_ID                                                  # resumable: Tune saves

`--address` defaults to RAY_API_SERVER_ADDRESS, then RAY_ADDRESS, as Ray's own `ray job` does.
A cluster with token auth needs RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN) in the environment.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from orchestrator.cli.errors import user_errors

F = TypeVar("F", bound=Callable[..., Any])
_SET_HELP = "Override a config value, e.g. --set train.max_steps=50 (repeatable)."


def _address_option(command: F) -> F:
    return click.option(
        "--address", envvar=["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"], required=True,
        help="Ray Jobs API (dashboard) address, e.g. http://127.0.0.1:8265 "
             "[env: RAY_API_SERVER_ADDRESS, then RAY_ADDRESS].",
    )(command)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def register(group: click.Group) -> None:
    """Add the cluster commands to the `sweep` group."""
    from cluster import jobs

    @group.command()
    @click.argument("config", type=click.Path(exists=True, dir_okay=False))
    @click.option("--set", "overrides", multiple=True, help=_SET_HELP)
    @_address_option
    def submit(config: str, overrides: tuple[str, ...], address: str) -> None:
        """Run the sweep in CONFIG as a Ray Job on the cluster; print the job id."""
        with user_errors():  # config, an existing experiment, the cluster refusing
            job_id = jobs.submit(config, address, list(overrides))
            experiment = jobs.job_info(job_id, address).metadata.get("experiment")
        click.echo(job_id)
        click.echo(f"Experiment: {experiment}\nFollow: sweep logs {job_id} --follow\n"
                   f"Stop (resumable): sweep stop {job_id}", err=True)

    @group.command()
    @click.argument("job_id")
    @_address_option
    def status(job_id: str, address: str) -> None:
        """Show a job's status, its experiment folder and, if it failed, why."""
        with user_errors():
            info = jobs.job_info(job_id, address)
        click.echo(f"{job_id}: {info.status.value}")
        click.echo(f"  experiment: {(info.metadata or {}).get('experiment', '-')}")
        click.echo(f"  started: {_when(info.start_time)}  ended: {_when(info.end_time)}")
        if info.message:
            click.echo(f"  message: {info.message}")

    @group.command()
    @click.argument("job_id")
    @_address_option
    @click.option("--follow", "-f", is_flag=True, help="Stream until the job ends.")
    def logs(job_id: str, address: str, follow: bool) -> None:
        """Print what a job's driver printed (progress lines, the final summary)."""
        try:
            with user_errors():
                for chunk in jobs.logs(job_id, address, follow=follow):
                    click.echo(chunk, nl=False)
        except KeyboardInterrupt:  # stop following; the job goes on
            sys.exit(130)

    @group.command()
    @click.argument("job_id")
    @_address_option
    @click.option("--no-wait", is_flag=True, help="Return once the stop is requested.")
    def stop(job_id: str, address: str, no_wait: bool) -> None:
        """Stop a job; Tune saves the experiment state first, so the sweep can be resumed."""
        with user_errors():
            final = jobs.stop(job_id, address, wait=not no_wait)
        click.echo(f"{job_id}: {final}")

    @group.command("list")
    @_address_option
    def list_command(address: str) -> None:
        """List the cluster's jobs, oldest first."""
        with user_errors():
            found = jobs.list_jobs(address)
        for info in found:
            experiment = (info.metadata or {}).get("experiment", info.entrypoint)
            click.echo(f"{info.submission_id or info.job_id}  {info.status.value:<9}  "
                       f"{_when(info.start_time)}  {experiment}")
