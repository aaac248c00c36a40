"""`sweep predict MODEL [TEXT] [--file F]`: run the best model of a sweep, or an exported one.

`orchestrator.cli.main` adds it with `register(main)`; the logic is `orchestrator.post.predict`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from orchestrator.cli.errors import user_errors


def _show(result: dict[str, Any]) -> str:
    """One prediction for a person: the completion, or the label and its top classes."""
    if "completion" in result:
        return result["completion"].strip()
    width = max(len(name) for name in result["probabilities"])
    lines = [f"{result['label']}"]
    lines += [f"  {name:<{width}}  {p:.4f}" for name, p in result["probabilities"].items()]
    return "\n".join(lines)


@click.command("predict")
@click.argument("model")
@click.argument("text", required=False)
@click.option("--file", "input_file", type=click.Path(dir_okay=False), default=None,
              help="Inputs, one per line; a .jsonl file: one JSON object per line with the "
              "prompt template's fields (a classifier's: the text column). Writes JSONL.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSONL file for the predictions (default: standard output).")
@click.option("--raw", is_flag=True, help="Send the text as it is, without the sweep's "
              "prompt template.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Causal LM: most tokens generated per input.")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Causal LM: 0 decodes greedily (the same answer every time); above 0 "
              "samples.")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classifier: classes shown with their probabilities.")
@click.option("--trial", "trial_id", default=None,
              help="Experiment: this trial's best checkpoint instead of the best trial's.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Inputs run together.")
def predict(model: str, text: str | None, input_file: str | None, out: str | None, raw: bool,
            max_new_tokens: int, temperature: float, top_k: int, trial_id: str | None,
            batch_size: int) -> None:
    """Run MODEL on TEXT, or on every line of --file. MODEL is an experiment (folder or s3://
    URI made by `sweep run`: its best trial's best checkpoint, with the sweep's prompt template
    applied to the text) or a folder written by `sweep export` (any transformers/peft folder).
    A causal LM prints its completion; a classifier the label and its top classes."""
    from orchestrator.post.errors import PredictInputError
    from orchestrator.post.predict import load_predictor, read_inputs

    with user_errors():  # a missing path, neither an experiment nor an export, bad inputs
        if (text is None) == (input_file is None):
            raise PredictInputError("give one input: a TEXT argument, or --file F with one "
                                    "input per line")
        items: list[Any] = read_inputs(input_file) if input_file else [text]
        if not items:
            raise PredictInputError(f"--file {input_file}: no inputs (every line is blank)")
        predictor = load_predictor(model, trial_id=trial_id)
        results = predictor.predict(items, raw=raw, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_k=top_k,
                                    batch_size=batch_size)
    if input_file is None and out is None:
        click.echo(_show(results[0]))
        return
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if out is None:
        click.echo(lines, nl=False)
        return
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(lines)
    click.echo(f"Wrote {len(results)} predictions to {out}", err=True)


def register(group: click.Group) -> None:
    """Add `predict` to the `sweep` command group."""
    group.add_command(predict)
