"""A trainable that misbehaves on purpose, by trial index, around the real one.

Registered with cloudpickle by value so Ray workers need not import the tests folder.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

# What trial number N does (trial names end in _0000N):
PLAN = {
    0: "raise_once",        # an exception after the step-10 report: retried from checkpoint
    1: "sigkill_once",      # its process is killed after step 10: retried from checkpoint
    2: "oom",               # out of memory at the first step: infeasible, not retried
    3: "nan",               # NaN loss: diverged, reported as the worst value
    4: "corrupt_then_raise",  # newest checkpoint corrupted, then a crash: older one is used
}


def make_chaotic(markers: Path, experiment: Path) -> Any:
    def chaotic_trainable(config: dict, *, spec: dict, data: Any, pad_id: int) -> None:
        import torch
        from ray import tune

        from trainables import loop
        from trainables.tune_entry import run_trial

        name = tune.get_context().get_trial_name()
        role = PLAN.get(int(name.rsplit("_", 1)[-1]), "normal")
        attempt = markers / f"{name}.attempts"
        attempts = int(attempt.read_text()) + 1 if attempt.exists() else 1
        attempt.write_text(str(attempts))
        real_report = tune.report

        def report(metrics: dict, checkpoint: Any = None) -> None:
            real_report(metrics, checkpoint=checkpoint)
            step = metrics.get("step")
            if attempts == 1 and role in ("raise_once", "sigkill_once") and step == 10:
                if role == "sigkill_once":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("chaos: injected failure after step 10")
            if attempts == 1 and role == "corrupt_then_raise" and step == 15:
                trial_dir = next(experiment.glob(f"*{name}*"))  # in storage, as persisted
                newest = max(trial_dir.glob("checkpoint_*"))
                target = newest / "adapter" / "adapter_model.safetensors"
                target.write_bytes(target.read_bytes()[:100])  # a torn write
                raise RuntimeError("chaos: crash after a torn checkpoint")

        real_setup = loop.setup
        tune.report = report
        if role in ("oom", "nan"):
            def poisoned_setup(*args: Any, **kwargs: Any) -> Any:
                s = real_setup(*args, **kwargs)

                def hook(module: Any, inputs: Any, kw: Any, output: Any) -> Any:
                    if role == "oom":
                        raise torch.OutOfMemoryError("chaos: CUDA out of memory (injected)")
                    output["loss"] = output["loss"] * float("nan")
                    return output

                s.model.register_forward_hook(hook, with_kwargs=True)
                return s

            loop.setup = poisoned_setup
        try:
            run_trial(config, spec=spec, data=data, pad_id=pad_id)
        finally:  # a reused actor runs the next trial in this process: undo the patches
            tune.report, loop.setup = real_report, real_setup

    return chaotic_trainable
