"""Learning-curve tables of real fine-tuning runs, and search methods replayed on them.

- `tasks`: each table's task, shrunken budget and fixed candidate set;
- `build`: trains every candidate with the project's own sweep machinery, writes the table;
- `table`: the table's schema, loading and checks;
- `replay`, `methods`, `compare`: every searcher and scheduler run on real Ray Tune against the
  recorded curves, and the comparison that picks the default.
"""
