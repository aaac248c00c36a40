"""Running a sweep: preflight (the plan), storage checks, the Tuner and its callbacks (progress,
logging, checkpoint hygiene), the leakage check, and resume."""
