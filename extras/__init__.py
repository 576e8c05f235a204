"""The paper's side roads: the auxiliary MLM loss (--do-mlm), Table 1's text augmentations (--augment) and
gradient caching for large batches (--micro-batch)."""
