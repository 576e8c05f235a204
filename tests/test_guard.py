"""The NaN/inf guard (guard.py): a non-finite loss or gradient skips its update and is counted; five in a row
stop the run and keep the best checkpoint."""
import json
import math

import pytest
import torch

import simcse
import train
from formats.checkpoint import read_safetensors


def nan_from(steps, monkeypatch):
    """Make contrastive_loss return NaN at the given (1-based) training steps."""
    calls = {"n": 0}
    loss = simcse.contrastive_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = loss(*args, **kwargs)
        return value * float("nan") if calls["n"] in steps else value
    monkeypatch.setattr(simcse, "contrastive_loss", poisoned)


def tiny_config(tiny_checkpoint, data_root, out, **kw):
    return train.TrainConfig(**{**dict(model=tiny_checkpoint, output_dir=str(out), batch_size=8, max_steps=6,
                                       eval_steps=2, data_dir=str(data_root)), **kw})


def test_a_nan_loss_is_skipped_and_counted(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    nan_from({3}, monkeypatch)
    result = train.train(tiny_config(tiny_checkpoint, data_root, tmp_path / "run"), progress=False,
                         test=False)
    assert [(r["step"], r["nonfinite"]) for r in result["log"]] == [(0, 0), (2, 0), (4, 1), (6, 1)]
    assert all(math.isfinite(r["loss"]) for r in result["log"][1:])  # the mean of the finite steps
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(torch.isfinite(w).all() for w in state["model"].values())  # the update skipped, not applied
    assert all(int(s["step"]) == 5 for s in state["optimizer"]["state"].values())  # 6 steps, one skipped
    assert state["nonfinite"] == 1


def test_repeated_nans_stop_the_run_and_keep_the_best(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    nan_from(set(range(3, 100)), monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError,
                       match=r"5 non-finite losses or gradients in a row \(last at step 7\)"):
        train.train(tiny_config(tiny_checkpoint, data_root, out, max_steps=20), progress=False, test=False)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["nonfinite"] for r in log] == [0, 0, 2, 4]
    assert json.loads((out / "best" / "train_config.json").read_text())["max_steps"] == 20
    weights = read_safetensors(str(out / "best" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    best = max(log, key=lambda r: r["stsb_dev"])
    assert best["step"] <= 2  # evaluations after step 2 score the same model: not a new best
