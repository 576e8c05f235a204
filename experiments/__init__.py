"""The paper's experiments as grids of train.py runs: the runner behind `ablate.py` (tables, `sweep`)."""
