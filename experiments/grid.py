"""A grid of train.py runs (settings x seeds), run one after another and summarised as mean +- std: the
runner of `ablate.py` (the paper's tables) and `ablate.py sweep` (any settings). Each run has its own
folder, <output-dir>/<setting>/seed-<seed>; started again, a grid skips the runs that finished and resumes
the one that was interrupted."""
import json
import re
import statistics
import time
from pathlib import Path

import train
from formats.files import write_file
from infra import config
from infra.cli import json_text
from infra.run_folder import RunFolder


def folder_name(setting):
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", setting.replace("--", "").strip()) or "default"


def summarize(values):
    """n, mean, sample standard deviation (None below 2 runs), min, max; runs without the number left out."""
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(values), "mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None, "min": min(values),
            "max": max(values)}


def cell(s):
    if s["n"] == 0:
        return "-"
    std = f" ± {s['std']:.2f}" if s["std"] is not None else ""
    return f"{s['mean']:.2f}{std} [{s['min']:.2f}, {s['max']:.2f}]"


def plan_grid(out: Path, settings, seeds, common):
    """Every run of a grid, checked before any runs: settings are (name, folder, train.py flags as a list of
    values, never a string to split again), each run <out>/<folder>/seed-<seed> with the flags `common +
    flags`. Returns [(name, seed, folder, cfg, options, done)]; a run with run.json is resumed, one with
    sweep_run.json is done."""
    plan = []  # parse every run's flags before running any, so that a typo stops nothing half-way
    for name, subfolder, flags in settings:
        for seed in seeds:
            folder = out / subfolder / f"seed-{seed}"
            argv_run = [*common, *flags, "--seed", str(seed), "--output-dir", str(folder)]
            cfg, options = config.parse_args(argv_run)
            config.check(cfg)  # values in range, the model found
            resume = (folder / "run.json").exists()
            done = (folder / "sweep_run.json").exists()
            if not done:  # a run to go on with must have the same settings
                RunFolder(cfg, resume=resume, overwrite=options["overwrite"])
            plan.append((name, seed, folder, cfg, {**options, "resume": resume}, done))
    return plan


def run_grid(plan, names, report):
    """Run what the plan has not done, one after another; after each run (so that a partial report survives
    a kill) report(runs, summary): every run's record and, per name, summarize() of the best STS-B dev
    and of the test average. Returns (runs, summary)."""
    runs = []
    for i, (name, seed, folder, cfg, options, done) in enumerate(plan, 1):
        result_file = folder / "sweep_run.json"
        if done:
            print(f"[{i}/{len(plan)}] {name or '(defaults)'} seed {seed}: done before, skipped")
        else:
            resuming = ": resuming" if options["resume"] else ""
            print(f"[{i}/{len(plan)}] {name or '(defaults)'} seed {seed}{resuming}")
            start = time.perf_counter()
            result = train.train(cfg, **options)
            # the best evaluation of the trained model, as the paper's runs select (they never score step 0:
            # a setting that only hurts must not report the starting model's number)
            trained = max((r for r in result["log"] if r["step"] > 0), key=lambda r: r["stsb_dev"])
            record = {"setting": name, "seed": seed, "folder": str(folder), "stsb_dev": trained["stsb_dev"],
                      "best_step": trained["step"], "start": result["log"][0]["stsb_dev"],
                      "test_avg": result["test"]["Avg"] if result["test"] else None,
                      "seconds": round(time.perf_counter() - start, 1)}  # of the call that finished it
            write_file(result_file, json_text(record, indent=2))
        runs.append(json.loads(result_file.read_text(encoding="utf-8")))
        summary = {s: {"stsb_dev": summarize([r["stsb_dev"] for r in runs if r["setting"] == s]),
                       "test_avg": summarize([r["test_avg"] for r in runs if r["setting"] == s])}
                   for s in names}
        report(runs, summary)
    return runs, summary


def write_report(out: Path, settings, runs, summary, command):
    report = {"command": command, "runs": runs, "summary": summary}
    write_file(out / "sweep.json", json_text(report, indent=2))
    lines = ["| setting | n | best STS-B dev, mean ± std [min, max] | test Avg., mean ± std [min, max] |",
             "|---|---|---|---|"]
    lines += [f"| `{s}` | {v['stsb_dev']['n']} | {cell(v['stsb_dev'])} | {cell(v['test_avg'])} |"
              for s, v in summary.items()]
    table = "\n".join(lines)
    write_file(out / "sweep.md", f"`{command}`\n\n{table}\n")  # UTF-8, as every file written: "±"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no sweep.png)")
        return table
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(settings)), 3.5))
    for i, s in enumerate(settings):
        values = [r["stsb_dev"] for r in runs if r["setting"] == s and r["stsb_dev"] is not None]
        ax.plot([i] * len(values), values, ".", color="gray")
        m = summary[s]["stsb_dev"]
        if m["n"]:
            ax.errorbar(i, m["mean"], yerr=m["std"] or 0, fmt="o", color="C0", capsize=4)
    ax.set_xticks(range(len(settings)), [s or "(defaults)" for s in settings], fontsize=8)
    ax.set_ylabel("best STS-B dev (Spearman x100)")
    ax.set_title("mean ± std over seeds (dots: runs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=120)
    return table
