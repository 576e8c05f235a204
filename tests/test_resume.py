"""Trustworthy runs: resume after kill -9 bit for bit, checkpoints never half-written, the NaN/inf guard,
and seed sweeps whose statistics are recomputable from their runs."""
import json
import math
import statistics
import subprocess
import sys

import pytest
import torch

import run_folder
import simcse
import sweep
import train
from bert import BertConfig, BertModel
from checkpoint import read_safetensors
from data import REPO

ARGS = ["--max-steps", "12", "--eval-steps", "4", "--batch-size", "8", "--no-test"]

# Runs train.py's main() in a process that kills itself (SIGKILL, as kill -9) once the state of step 8 is
# saved.
KILL_AFTER_STEP_8 = """
import os, runpy, signal, sys, json
sys.argv = ["train.py"] + sys.argv[1:]
import run_folder
swap = run_folder.replace_folder
def replace_then_die(folder, write):
    swap(folder, write)
    if folder.name == "last" and json.loads((folder / "state.json").read_text())["step"] == 8:
        os.kill(os.getpid(), signal.SIGKILL)
run_folder.replace_folder = replace_then_die
runpy.run_path("train.py", run_name="__main__")
"""


def train_cli(args, code=None):
    command = [sys.executable] + (["-c", code] if code else ["train.py"]) + args
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def log_without_seconds(out):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def test_resume_after_kill_9_is_bit_identical(tiny_checkpoint, data_root, tmp_path):
    common = ARGS + ["--model", tiny_checkpoint, "--data-dir", str(data_root)]
    whole = train_cli(common + ["--output-dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = train_cli(common + ["--output-dir", str(tmp_path / "cut")], code=KILL_AFTER_STEP_8)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [r["step"] for r in log_without_seconds(tmp_path / "cut")] == [0, 4]  # log.jsonl follows last/
    resumed = train_cli(common + ["--output-dir", str(tmp_path / "cut"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout and "after step 8" in resumed.stdout

    assert log_without_seconds(tmp_path / "cut") == log_without_seconds(tmp_path / "whole")
    assert [r["step"] for r in log_without_seconds(tmp_path / "whole")] == [0, 4, 8, 12]
    for folder in ("best", "last"):
        assert (tmp_path / "cut" / folder / "model.safetensors").read_bytes() == \
            (tmp_path / "whole" / folder / "model.safetensors").read_bytes()


def test_resume_with_nothing_to_resume_or_another_config_is_one_line(tiny_checkpoint, data_root, tmp_path):
    common = ARGS + ["--model", tiny_checkpoint, "--data-dir", str(data_root), "--output-dir",
                     str(tmp_path / "run")]
    nothing = train_cli(common + ["--resume"])
    assert (nothing.returncode == 1 and "nothing to resume" in nothing.stderr
            and "Traceback" not in nothing.stderr)
    assert train_cli(common + ["--max-steps", "4"]).returncode == 0
    other = train_cli(common + ["--max-steps", "4", "--lr", "1e-4", "--dropout", "0.2", "--resume"])
    message = other.stderr.strip()
    assert other.returncode == 1 and "\n" not in message and "Traceback" not in message
    assert ("another configuration" in message and "dropout 0.1 -> 0.2" in message
            and "lr 3e-05 -> 0.0001" in message)


def test_interrupted_checkpoint_write_leaves_the_previous_one(tmp_path):
    folder = tmp_path / "best"
    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32))
    run_folder.replace_folder(folder, lambda tmp: model.save_pretrained(tmp))
    saved = (folder / "model.safetensors").read_bytes()

    def crash_half_way(tmp):  # the new weights are written, then the process dies before the swap
        with torch.no_grad():
            model.pooler.dense.weight.add_(1.0)
        model.save_pretrained(tmp)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_folder.replace_folder(folder, crash_half_way)
    assert (folder / "model.safetensors").read_bytes() == saved
    BertModel.from_pretrained(str(folder))  # complete and loadable

    # A crash between the swap's two renames leaves best.old and no best: recover() puts it back.
    folder.rename(tmp_path / "best.old")
    run_folder.recover(folder)
    assert (folder / "model.safetensors").read_bytes() == saved


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
    weights = read_safetensors(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())  # the update was skipped, not applied
    state = torch.load(tmp_path / "run" / "last" / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    assert all(int(s["step"]) == 5 for s in state.values())  # 6 steps, one skipped


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


def test_sweep_statistics_and_restart(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["--seeds", "1", "2", "--settings", "--dropout 0.1", "--dropout 0.1 --fixed-mask", "--output-dir",
            str(out), "--model", tiny_checkpoint, "--data-dir", str(data_root), "--batch-size", "8",
            "--max-steps", "3", "--eval-steps", "1",
            "--no-mlp-only-train", "--no-test"]  # the MLP, new per seed, in every score
    sweep.main(argv)
    report = json.loads((out / "sweep.json").read_text())
    assert [(r["setting"], r["seed"]) for r in report["runs"]] == [
        ("--dropout 0.1", 1), ("--dropout 0.1", 2), ("--dropout 0.1 --fixed-mask", 1),
        ("--dropout 0.1 --fixed-mask", 2)]
    for setting, summary in report["summary"].items():
        values = [r["stsb_dev"] for r in report["runs"] if r["setting"] == setting]
        for run in (r for r in report["runs"] if r["setting"] == setting):  # each number is its run's best
            log = [json.loads(line) for line in (REPO / run["folder"] / "log.jsonl").read_text().splitlines()]
            assert run["stsb_dev"] == max(r["stsb_dev"] for r in log if r["step"] > 0)  # trained: not step 0
        assert summary["stsb_dev"] == {"n": 2, "mean": pytest.approx(statistics.mean(values)),
                                       "min": min(values), "max": max(values),
                                       "std": pytest.approx(statistics.stdev(values))}
        assert summary["test_avg"]["n"] == 0
        assert values[0] != values[1] and summary["stsb_dev"]["std"] > 0  # statistics of numbers that differ
    assert (out / "sweep.md").read_text().count("| `--dropout 0.1") == 2 and (out / "sweep.png").exists()

    # Killed during a run: the restart skips finished runs and resumes the interrupted one.
    (out / "dropout_0.1_fixed-mask" / "seed-2" / "sweep_run.json").unlink()
    calls = []
    real_train = train.train
    monkeypatch.setattr(train, "train",
                        lambda cfg, **kw: calls.append((cfg.seed, kw["resume"])) or real_train(cfg, **kw))
    sweep.main(argv)
    assert calls == [(2, True)]
    assert untimed(json.loads((out / "sweep.json").read_text())["runs"]) == untimed(report["runs"])


def untimed(runs):  # the records but the seconds of the call that finished each run
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
