"""What is tried and what is stopped: the search space, search algorithms and schedulers by name,
and the scheduler state that survives a resume."""
