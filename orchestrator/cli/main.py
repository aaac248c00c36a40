"""`sweep` command line: run, validate and inspect sweeps."""

from __future__ import annotations

import click

from orchestrator.cli.errors import user_errors
from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config

_SET_HELP = "Override a config value, e.g. --set train.max_steps=50 (repeatable)."
_VERBOSE_HELP = ("Print Ray's own output (its logs, every trial's stdout/stderr) here "
                 "instead of EXPERIMENT/logs/ray.log.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Hyperparameter sweeps for LLM fine-tuning on Ray Tune."""


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, help=_SET_HELP)
@click.option("--address", default=None, help="Ray cluster address; `auto`: a `ray start` "
              "cluster on this machine (default: RAY_ADDRESS, else a new local Ray).")
@click.option("--verbose", is_flag=True, help=_VERBOSE_HELP)
def run(config: str, overrides: tuple[str, ...], address: str | None, verbose: bool) -> None:
    """Run the sweep in CONFIG and print the best trial."""
    from orchestrator.run.launch import launch

    with user_errors():  # config, leakage, storage, an existing experiment, a stalled sweep
        launch(config, list(overrides), address=address, verbose=verbose)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, help=_SET_HELP)
@click.option("--address", default=None, help="Ray cluster to check resources against.")
@click.option("--no-cluster", is_flag=True, help="Skip the resources check (no Ray started).")
def validate(config: str, overrides: tuple[str, ...], address: str | None,
             no_cluster: bool) -> None:
    """Check CONFIG, its search space, model, data and resources, without training."""
    from orchestrator.experiment.storage import check_writable_from_every_node, check_writable_here
    from orchestrator.run.preflight import build_plan

    with user_errors():  # config, storage, model, data
        cfg = load_config(config, list(overrides))
        nodes = None
        if not no_cluster:
            import ray

            from orchestrator.run.launch import ensure_ray

            ensure_ray(address)
            nodes = ray.nodes()
        # The storage preflight of `sweep run`: on every node, or here with --no-cluster.
        storage_problems = (check_writable_here(cfg.storage_path) if nodes is None
                            else check_writable_from_every_node(cfg.storage_path, nodes))
        if storage_problems:
            raise ConfigError(storage_problems, "sweep")
        plan = build_plan(cfg, nodes=nodes)
    summary = ", ".join(f"{k}={v}" for k, v in plan.data.summary().items())
    click.echo(f"OK: {config}\n  task={cfg.task} metric={cfg.metric} ({cfg.mode}) "
               f"search={cfg.search.algorithm} scheduler={cfg.scheduler.type} "
               f"num_samples={cfg.num_samples}\n  data: {summary}\n"
               f"  at most {plan.max_steps} optimizer steps per trial")
    if cfg.quality.check_leakage:
        from orchestrator.run.leakage import check_data_leakage, format_leakage_warning

        leakage = check_data_leakage(plan.data, cfg.quality.near_duplicate_threshold)
        click.echo(format_leakage_warning(leakage))


@main.command()
@click.argument("experiment")
@click.option("--all-columns", is_flag=True, help="Show every column of the trial table.")
def results(experiment: str, all_columns: bool) -> None:
    """Show the trial table and the best trial of EXPERIMENT (a folder or s3:// URI made by
    `sweep run`)."""
    import pandas as pd

    from orchestrator.experiment.results import load_results

    with user_errors():  # no such experiment, nothing reported yet
        result = load_results(experiment)
    table = result.trials
    if not all_columns:
        keep = [c for c in table.columns
                if c not in ("node_ip", "node_id", "total_steps", "diverged", "fit_note")]
        table = table[keep]
    with pd.option_context("display.max_columns", None, "display.width", 200):
        click.echo(table.to_string(index=False))
    click.echo("")
    click.echo(result.summary())


@main.command()
@click.argument("experiment")
@click.option("--address", default=None, help="Ray cluster address; `local` starts a new Ray.")
@click.option("--restart-errored", is_flag=True,
              help="Start errored trials from scratch instead of from their checkpoints.")
@click.option("--verbose", is_flag=True, help=_VERBOSE_HELP)
def resume(experiment: str, address: str | None, restart_errored: bool, verbose: bool) -> None:
    """Continue the interrupted sweep in EXPERIMENT (folder or s3:// URI)."""
    from orchestrator.run.resume import resume as resume_sweep

    with user_errors():  # config, storage, unrecoverable state, a stalled sweep
        resume_sweep(experiment, address=address, restart_errored=restart_errored,
                     verbose=verbose)


def _register_optional_commands() -> None:
    """Post-sweep and cluster commands live in their own modules."""
    from orchestrator.cli.post import register as register_post_sweep
    from orchestrator.cli.predict import register as register_predict
    from orchestrator.cli.report import register as register_report

    register_post_sweep(main)
    register_predict(main)
    register_report(main)
    from cluster.cli import register

    register(main)


_register_optional_commands()

if __name__ == "__main__":
    main()
