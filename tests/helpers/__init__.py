"""What the tests share: programs run in a process of their own (cut_train.py, the fault harness;
without_fcntl.py), helpers for runs (runs.py) and files of sentence pairs (pairs.py)."""
