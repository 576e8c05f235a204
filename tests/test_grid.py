"""Grids of runs (experiments/grid.py), as `python ablate.py sweep` runs them: statistics recomputable from
their runs, and a restart that skips the finished runs and resumes the interrupted one."""
import json
import statistics

import pytest

import ablate
import train
from data import REPO


def test_sweep_statistics_and_restart(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["--seeds", "1", "2", "--settings", "--dropout 0.1", "--dropout 0.1 --fixed-mask", "--output-dir",
            str(out), "--model", tiny_checkpoint, "--data-dir", str(data_root), "--batch-size", "8",
            "--max-steps", "3", "--eval-steps", "1",
            "--no-mlp-only-train", "--no-test"]  # the MLP, new per seed, in every score
    ablate.sweep(argv)
    report = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
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
    table = (out / "sweep.md").read_bytes().decode("utf-8")  # "±" in UTF-8, whatever the locale
    assert table.count("| `--dropout 0.1") == 2 and " ± " in table and (out / "sweep.png").exists()

    # Killed during a run: the restart skips finished runs and resumes the interrupted one.
    (out / "dropout_0.1_fixed-mask" / "seed-2" / "sweep_run.json").unlink()
    calls = []
    real_train = train.train
    monkeypatch.setattr(train, "train",
                        lambda cfg, **kw: calls.append((cfg.seed, kw["resume"])) or real_train(cfg, **kw))
    ablate.sweep(argv)
    assert calls == [(2, True)]
    assert untimed(json.loads((out / "sweep.json").read_text())["runs"]) == untimed(report["runs"])


def untimed(runs):  # the records but the seconds of the call that finished each run
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
