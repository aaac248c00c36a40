"""After the sweep: export the best model, score the test split, merge and soup the top trials,
the forgetting check, and the HTML report."""
