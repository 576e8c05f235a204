"""What the tests share: the fault harness run as a program (cut_train.py) and helpers for runs (runs.py)."""
