"""ablate.py: the tables carry the paper's numbers (arXiv v4), every row's flags are valid
train.py flags, a tiny table run writes every file with every row, and a restart redoes no finished run."""
import json
import math
import shlex

import pytest

import ablate
from data import REPO
from experiments import grid
import train

# STS-B dev x100 of the paper (BERT-base), as it prints them; None: a row without a paper number.
PAPER = {
    "table1": {"none (unsup. SimCSE)": 82.5, "crop 10%": 77.8, "crop 20%": 71.4, "crop 30%": 63.6,
               "word deletion 10%": 75.9, "word deletion 20%": 72.2, "word deletion 30%": 68.2,
               "delete one word": 75.9, "delete one word, w/o dropout": 74.2, "synonym replacement": 77.4,
               "MLM 15%": 62.2},
    "table3": {"p = 0": 71.1, "p = 0.01": 72.6, "p = 0.05": 81.1, "p = 0.1": 82.5, "p = 0.15": 81.4,
               "p = 0.2": 80.5, "p = 0.5": 71.0, "fixed 0.1": 43.6},
    "table6": {"unsup: [CLS] w/ MLP": 81.7, "unsup: [CLS] w/ MLP (train)": 82.5, "unsup: [CLS] w/o MLP": 80.9,
               "unsup: first-last avg.": 81.2, "sup: [CLS] w/ MLP": 86.2, "sup: [CLS] w/ MLP (train)": 85.8,
               "sup: [CLS] w/o MLP": 86.2, "sup: first-last avg.": 86.1},
    "table7": {"none (entailment pairs only)": 84.9, "contradiction + neutral": 85.3, "alpha = 0.5": 86.1,
               "alpha = 1": 86.2, "alpha = 2": 86.2},
    "tableD1": {"dot product (tau: N/A)": 85.9, "cos, tau = 0.001": 84.9, "cos, tau = 0.01": 85.4,
                "cos, tau = 0.05": 86.2, "cos, tau = 0.1": 82.0, "cos, tau = 1": 64.0},
    "batch": {f"batch {b}, lr {lr}": None for b in (64, 128, 256, 512) for lr in ("1e-5", "3e-5", "5e-5")},
    "dropout": {name: None for name in (
        "every dropout, p = 0.1", "no dropout", "attention only", "hidden only", "embeddings only",
        "top 3 layers only", "bottom 3 layers + embeddings", "one view clean (0.1, 0)")},
    "figure2": {"unsup. SimCSE": None, "no dropout": None, "fixed 0.1": None, "delete one word": None},
}


def test_each_table_carries_the_papers_numbers():
    assert set(ablate.TABLES) == set(PAPER)
    for table, numbers in PAPER.items():
        assert {name: row.paper for _, _, row, name, _ in ablate.rows(table)} == numbers
    weights = {name: row.flags for _, _, row, name, _ in ablate.rows("table7")}
    for alpha in (0.5, 2):  # Table 7's alpha multiplies e^sim: the weight added to the logit is ln(alpha)
        assert float(shlex.split(weights[f"alpha = {alpha}"])[-1]) == pytest.approx(math.log(alpha))


@pytest.mark.parametrize("table", list(PAPER))
def test_every_row_is_valid_train_flags_or_says_why_not(table, tiny_checkpoint, tmp_path):
    listed = list(ablate.rows(table))
    assert len({grid.folder_name(name) for *_, name, _ in listed}) == len(listed)  # a folder each
    settings = [(name, grid.folder_name(name), ablate.train_argv(base, row, tmp_path / "t"))
                for _, base, row, name, why_not in listed if why_not is None]
    plan = grid.plan_grid(tmp_path, settings, [1], ["--model", tiny_checkpoint])  # config.check on each
    assert len(plan) == len(settings) >= len(listed) - 2
    for _, _, row, name, why_not in listed:
        if why_not:  # what it needs, in one line
            assert "\n" not in why_not and ("needs" in why_not) and row.label in (
                "synonym replacement", "MLM 15%", "contradiction + neutral")
    assert not list(tmp_path.iterdir())  # planning writes nothing


def test_table3_end_to_end_and_restart(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    out = tmp_path / "t3"
    argv = ["table3", "--seeds", "1", "2", "--max-steps", "1", "--batch-size", "8", "--eval-steps", "1",
            "--model", tiny_checkpoint, "--data-dir", str(data_root), "--output-dir", str(out)]
    ablate.main(argv)
    md = (out / "table3.md").read_text()
    report = json.loads((out / "table3.json").read_text())
    assert (out / "table3.png").stat().st_size > 0
    for row in report["rows"]:  # every row, its paper number, a mean ± std over two seeds
        values = [r["stsb_dev"] for r in report["runs"] if r["setting"] == row["name"]]
        assert row["paper"] == PAPER["table3"][row["name"]] and row["ours"]["n"] == 2 and len(values) == 2
        assert row["ours"]["mean"] == pytest.approx(sum(values) / 2)
        line = next(x for x in md.splitlines() if x.startswith(f"| {row['name']} ") or
                    x.startswith(f"| **{row['name']}**"))
        assert f"| {row['paper']:.2f} |" in line and f"{row['ours']['mean']:.2f} ± " in line
    base = next(r for r in report["rows"] if r["default"])["ours"]["mean"]
    assert all(r["diff_to_default"] == pytest.approx(r["ours"]["mean"] - base)
               for r in report["rows"] if not r["default"])
    assert len(report["rows"]) == 8 and report["wall_seconds"] > 0

    # Interrupted during a run: started again, it finishes that one and redoes no finished run.
    (out / "fixed_0.1" / "seed-2" / "sweep_run.json").unlink()
    calls = []
    real = train.train
    monkeypatch.setattr(train, "train",
                        lambda cfg, **kw: calls.append((cfg.seed, kw["resume"])) or real(cfg, **kw))
    ablate.main(argv)
    assert calls == [(2, True)]
    assert untimed(json.loads((out / "table3.json").read_text())["runs"]) == untimed(report["runs"])

    # Again with more steps: the finished runs are not reported under the new command; nothing runs.
    before = (out / "table3.md").read_text()
    longer = [("2" if argv[i - 1] == "--max-steps" else a) for i, a in enumerate(argv)]
    with pytest.raises(SystemExit, match=r"p_=_0/seed-1 holds a run with other settings than this command's "
                                         r"\(max_steps 1 -> 2\): use another --output-dir, or delete it"):
        ablate.main(longer)
    assert calls == [(2, True)] and (out / "table3.md").read_text() == before


@pytest.mark.parametrize("flags, error", [  # the table's own flag, or train.py's (a sweep passes it on)
    (["--max-steps", "0"], r"^error: (argument --max-steps: '0'|--max-steps 0): expected an integer"),
    (["--eval-steps", "0"], r"^error: (argument --eval-steps: '0'|--eval-steps 0): expected an integer"),
    (["--seeds", "1", "1"], r"^error: argument --seeds: 1 given twice"),
    (["--jobs", "0"], r"^error: argument --jobs: '0': expected an integer in \[1, 2\*\*63\)")])
def test_a_zero_or_a_repeated_seed_is_an_error_before_any_run(flags, error, tiny_checkpoint, tmp_path):
    with pytest.raises(SystemExit, match=error):
        ablate.main(["table3", "--model", tiny_checkpoint, "--output-dir", str(tmp_path / "t3")] + flags)
    assert not (tmp_path / "t3").exists()
    with pytest.raises(SystemExit, match=error):
        ablate.main(["sweep", "--settings", "", "--model", tiny_checkpoint, "--output-dir",
                     str(tmp_path / "s")] + (flags if flags[0] == "--seeds" else ["--seeds", "1"] + flags))
    assert not (tmp_path / "s").exists()


def test_a_bad_table_flag_is_one_line_and_exit_1(tmp_path):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "ablate.py", "table3", "--max-steps", "0", "--output-dir",
                          str(tmp_path / "t3")], cwd=REPO, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (1, "error: argument --max-steps: '0': expected an integer in "
                                               "[1, 2**63) (usage: ablate.py --help)\n")


def test_dropout_table_has_no_paper_column_and_marks_the_noise(tmp_path):
    runs = [{"setting": name, "seed": seed, "folder": str(tmp_path), "stsb_dev": value, "dev_half_width": 0.3,
             "seconds": 1.0}
            for name, values in (("every dropout, p = 0.1", (82.0, 82.4, 82.2)), ("no dropout", (82.5, 82.3)),
                                 ("one view clean (0.1, 0)", (79.0, 79.1)))
            for seed, value in enumerate(values, 1)]
    summary = {n: {k: grid.summarize([r[k] for r in runs if r["setting"] == n])
                   for k in ("stsb_dev", "dev_half_width")} for n in {r["setting"] for r in runs}}
    ablate.write_report(tmp_path, "dropout", list(ablate.rows("dropout")), runs, summary, "cmd", 1.0)
    lines = (tmp_path / "dropout.md").read_text().splitlines()
    header = next(x for x in lines if x.startswith("| setting"))
    assert "paper" not in header and "STS-B dev 95% ±" in header
    assert any("the paper has no such rows" in x for x in lines)
    # +0.20 against 2 sqrt(0.2²/3 + 0.14²/2) = 0.31; -3.15 against the dev set's 0.30 (seeds: 0.25)
    row = lambda label: next(x for x in lines if x.startswith(f"| {label}"))
    assert row("no dropout ").endswith("| 0.30 | +0.20 ± 0.31, within noise |")
    assert row("one view clean").endswith("| 0.30 | -3.15 ± 0.30 |")
    assert (tmp_path / "dropout.png").stat().st_size > 0


def test_not_run_rows_and_figure2_trajectories_in_the_report(tmp_path):
    runs = []
    for name, seed, shift in [("unsup. SimCSE", 1, 0.0), ("unsup. SimCSE", 2, 0.2), ("no dropout", 1, 0.5)]:
        folder = tmp_path / f"{name}-{seed}"
        folder.mkdir()
        log = [{"step": s, "stsb_dev": 50 + s, "align": 0.1 * s + shift, "uniform": -s - shift}
               for s in (0, 10)]
        (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        runs.append({"setting": name, "seed": seed, "folder": str(folder), "stsb_dev": 60.0, "seconds": 1.0})
    summary = {name: {"stsb_dev": grid.summarize([r["stsb_dev"] for r in runs if r["setting"] == name])}
               for name in ("unsup. SimCSE", "no dropout")}
    ablate.write_report(tmp_path, "figure2", list(ablate.rows("figure2")), runs, summary, "cmd", 2.0)
    report = json.loads((tmp_path / "figure2.json").read_text())
    assert report["trajectories"]["unsup. SimCSE"] == [[0, pytest.approx(0.1), pytest.approx(-0.1)],
                                                       [10, pytest.approx(1.1), pytest.approx(-10.1)]]
    assert (tmp_path / "figure2.png").exists() and (tmp_path / "figure2.md").exists()

    ablate.write_report(tmp_path, "table7", list(ablate.rows("table7")), [], {}, "cmd", 1.0)
    md = (tmp_path / "table7.md").read_text()
    assert "| contradiction + neutral | — | 85.30 | not run: needs a neutral hypothesis" in md


def untimed(runs):  # the records but the seconds of the call that finished each run
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
