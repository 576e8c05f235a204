"""What the tests share: programs run in a process of their own (cut_train.py, the fault harness;
without_fcntl.py) and helpers for runs (runs.py)."""
