"""Grids of runs (experiments/grid.py), as `python ablate.py sweep` runs them: statistics recomputable from
their runs, one evaluation of each starting model, a restart that skips the finished runs and resumes the
interrupted one, --jobs 2 (two processes, a thread each), and the noise beside each difference."""
import json
import statistics

import pytest

import ablate
import eval_sts
import train
from data import REPO
from experiments import grid


def test_sweep_statistics_and_restart(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["--seeds", "1", "2", "--settings", "--dropout 0.1", "--dropout 0.1 --fixed-mask", "--output-dir",
            str(out), "--model", tiny_checkpoint, "--data-dir", str(data_root), "--batch-size", "8",
            "--max-steps", "3", "--eval-steps", "1",
            "--no-mlp-only-train", "--no-test"]  # the MLP, new per seed, in every score
    evaluations = []
    dev_metrics = eval_sts.dev_metrics
    monkeypatch.setattr(eval_sts, "dev_metrics", lambda *a: evaluations.append(1) or dev_metrics(*a))
    ablate.sweep(argv)
    # 4 runs x 3 evaluations after training, and the start evaluated once per seed: its fresh MLP (cls with
    # the MLP in the score) is drawn from the seed; the two settings of a seed start alike
    assert len(evaluations) == 4 * 3 + 2
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
    assert all(r["threads"] == train.torch.get_num_threads() and r["device"] == "cpu" for r in report["runs"])
    starts = {(r["seed"], r["start"]) for r in report["runs"]}
    assert len(starts) == 2 and len({seed for seed, _ in starts}) == 2  # a seed, a start
    table = (out / "sweep.md").read_bytes().decode("utf-8")  # "±" in UTF-8, whatever the locale
    assert table.count("| `--dropout 0.1") == 2 and " ± " in table and (out / "sweep.png").exists()
    half = report["summary"]["--dropout 0.1"]["dev_half_width"]["mean"]
    assert 0 < half < 20 and f"| {half:.2f} |" in table  # STS-B dev's bootstrap half-width, per setting

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


def test_two_jobs_run_the_grid_in_two_processes_of_one_thread(tiny_checkpoint, data_root, tmp_path):
    """--jobs 2 on this CPU: every run in a process of its own with half the threads, its output in its
    folder, the same runs and, the start shared by all (the MLP in training only), one evaluation of it."""
    out = tmp_path / "sweep"
    ablate.sweep(["--seeds", "1", "2", "--settings", "--dropout 0.1", "--dropout 0", "--output-dir", str(out),
                  "--model", tiny_checkpoint, "--data-dir", str(data_root), "--batch-size", "8",
                  "--max-steps", "2", "--eval-steps", "2", "--no-test", "--jobs", "2"])
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert [(r["setting"], r["seed"]) for r in runs] == [("--dropout 0.1", 1), ("--dropout 0.1", 2),
                                                         ("--dropout 0", 1), ("--dropout 0", 2)]  # as planned
    assert all(r["threads"] == max(1, train.torch.get_num_threads() // 2) for r in runs)
    assert all((REPO / r["folder"] / "train.out").read_text().startswith("11913 examples") for r in runs)
    assert len({r["start"] for r in runs}) == 1 and len(list((out / ".start_scores").iterdir())) == 1


def test_a_difference_within_its_noise_is_marked():
    """Table 3 at laptop scale: p = 0.1 at 82.19 ± 0.36 and p = 0.2 at 82.37 ± 0.18 (3 seeds) cannot be
    told apart: +0.18 against twice its standard error, 2 sqrt(0.36²/3 + 0.18²/3) = 0.46."""
    row, base = {"n": 3, "mean": 82.37, "std": 0.18}, {"n": 3, "mean": 82.19, "std": 0.36}
    assert grid.difference(row, base, 0.3) == "+0.18 ± 0.46, within noise"
    assert grid.difference({"n": 3, "mean": 80.45, "std": 0.05}, base, 0.3) == "-1.74 ± 0.42"
    assert grid.difference(row, base, 1.9) == "+0.18 ± 1.90, within noise"  # the dev set's own noise
    assert grid.difference({"n": 1, "mean": 80.0, "std": None}, base, 0.3) == "-2.19 (noise unknown: 1 seed)"
