"""What an experiment folder holds besides Ray Tune's own files (`experiment_state-*.json`,
`tuner.pkl` with the searcher and ASHA rung state, one folder per trial with `result.json`
and `checkpoint_*/`):

    sweep_config.yaml    the validated config the sweep ran (launch)
    baseline.json        the untrained model's validation metrics (launch)
    leakage.json         held-out texts also found in train (launch)
    distill.json         the teacher of a distillation sweep and what its one pass cost (launch)
    test_results.json    the top trials scored on the test split (sweep test)
    forgetting.json      general-text loss, tuned against base (sweep report --forgetting)
    logs/ray.log         what Ray printed: its driver logs, the trials' stdout/stderr (launch)

An export folder carries `sweep_export.json` (sweep export / sweep soup).
"""

SWEEP_CONFIG_FILE = "sweep_config.yaml"
BASELINE_FILE = "baseline.json"
LEAKAGE_FILE = "leakage.json"
DISTILL_FILE = "distill.json"
TEST_RESULTS_FILE = "test_results.json"
FORGETTING_FILE = "forgetting.json"
EXPORT_INFO_FILE = "sweep_export.json"
RAY_LOG_FILE = ("logs", "ray.log")  # parts below the experiment (orchestrator.run.ray_log)
TUNE_STATE_PREFIX = "experiment_state-"  # Tune's snapshots: experiment_state-<session>.json
