"""Measurements (`python -m bench ...`) and the reference oracle: the authors' SentEval loops rebuilt."""
