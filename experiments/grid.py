"""A grid of train.py runs (settings x seeds), summarised as mean +- std: the runner of `ablate.py` (the
paper's tables) and `ablate.py sweep` (any settings). Each run has its own folder,
<output-dir>/<setting>/seed-<seed>; started again, a grid skips the runs that finished with the grid's
settings (a finished run with other settings is refused, named) and resumes the one that was interrupted.
--jobs N runs N at once, each in a process of its own with its share of the CPU's threads, or its own GPU
where there are several; the runs that start from the same weights share one evaluation of them (step 0,
StartScores below)."""
import contextlib
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import time
from hashlib import sha256
from pathlib import Path

import torch

import train
from formats.files import read_text, write_file
from infra import config
from infra.cli import json_text
from infra.run_folder import RunFolder, read_run



class StartScores:
    """The dev scores of starting models, kept in a folder (a grid's: experiments/grid.py) and shared by its
    runs: a run that starts from the same weights, evaluated with the same embedding and tokenizer on the same
    dev pairs on the same kind of device, takes its step-0 scores from there instead of computing them again.
    The weights are those of the embedding: a fresh MLP (pooler cls, drawn from the seed) is a start of its
    own; with the MLP in training only, it is not part of the embedding evaluated."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def get(self, model, tokenizer, pooler, dev, compute):
        digest = sha256(json.dumps([pooler, str(next(model.parameters()).device.type), dev.sent1, dev.sent2,
                                    dev.scores]).encode())
        for path in tokenizer.files:
            digest.update(Path(path).read_bytes())
        for name, weights in model.state_dict().items():
            if pooler == "cls" or not name.startswith("pooler."):  # the weights the embedding reads
                digest.update(name.encode())
                digest.update(weights.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        path = self.folder / f"{digest.hexdigest()[:32]}.json"
        if path.exists():
            return json.loads(read_text(path))
        scores = compute()
        write_file(path, json_text(scores))
        return scores


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


def noise(row, base, half_width):
    """How large a difference of two rows' means must be to tell them apart: twice its standard error over
    the seeds (the two std's / sqrt(n)), or the dev set's own sampling noise, the half-width of its bootstrap
    95% interval, whichever is larger. None when a row has fewer than 2 seeds (no std)."""
    if row["std"] is None or base["std"] is None:
        return None
    seeds = 2 * math.sqrt(row["std"] ** 2 / row["n"] + base["std"] ** 2 / base["n"])
    return max(seeds, half_width or 0.0)


def difference(row, base, half_width):
    """The table's cell of a row's difference to the default row, with its noise (noise())."""
    if not (row["n"] and base["n"]):
        return "—"
    diff, bound = row["mean"] - base["mean"], noise(row, base, half_width)
    if bound is None:
        return f"{diff:+.2f} (noise unknown: 1 seed)"
    return f"{diff:+.2f} ± {bound:.2f}" + (", within noise" if abs(diff) < bound else "")


def check_seeds(seeds):
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"--seeds {' '.join(map(str, seeds))}: a seed given twice would be one run twice")


def plan_grid(out: Path, settings, seeds, common):
    """Every run of a grid, checked before any runs: settings are (name, folder, train.py flags: a list of
    values, never a string split again), each run <out>/<folder>/seed-<seed> with the flags `common + flags`.
    Returns [(name, seed, folder, cfg, options, done)]; a run with run.json is resumed, one with
    sweep_run.json is done -- if its settings are the grid's: else the grid is refused, naming them."""
    check_seeds(seeds)
    plan = []  # parse every run's flags before running any, so that a typo stops nothing half-way
    for name, subfolder, flags in settings:
        for seed in seeds:
            folder = out / subfolder / f"seed-{seed}"
            argv_run = [*common, *flags, "--seed", str(seed), "--output-dir", str(folder)]
            cfg, options = config.parse_args(argv_run)
            config.check(cfg)  # values in range, the model found
            if cfg.dev_file is not None:
                raise ValueError("--dev-file: a grid reports STS-B dev; train.py selects on your file")
            resume = (folder / "run.json").exists()
            done = (folder / "sweep_run.json").exists()
            if done or (folder / "last.pt").exists():  # a run to reuse or go on with has the grid's settings
                if changed := config.differences(read_run(folder)[0], cfg):
                    raise ValueError(f"{folder} holds a run with other settings than this command's "
                                     f"({'; '.join(changed)}): use another --output-dir, or delete it")
            if not done:
                RunFolder(cfg, resume=resume, overwrite=options["overwrite"])
            plan.append((name, seed, folder, cfg, {**options, "resume": resume}, done))
    return plan


def device_name():
    if torch.cuda.is_available():  # one GPU a process: CUDA_VISIBLE_DEVICES names which
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", str(torch.cuda.current_device()))
        return f"cuda {gpu} ({torch.cuda.get_device_name()})"
    return "cpu"


def run_one(name, seed, folder, cfg, options, shared):
    """One run of the grid, to its sweep_run.json (what the reports read); returns that record."""
    start = time.perf_counter()
    result = train.train(cfg, **options, start_scores=StartScores(shared) if shared else None)
    # the best evaluation of the trained model, as the paper's runs select (they never score step 0: a
    # setting that only hurts must not report the starting model's number)
    trained = max((r for r in result["log"] if r["step"] > 0), key=lambda r: r["stsb_dev"])
    ci = trained.get("stsb_dev_ci95")
    record = {"setting": name, "seed": seed, "folder": str(folder), "stsb_dev": trained["stsb_dev"],
              "best_step": trained["step"], "start": result["log"][0]["stsb_dev"],
              "dev_half_width": (ci[1] - ci[0]) / 2 if ci else None,  # STS-B dev's sampling noise
              "test_avg": result["test"]["Avg"] if result["test"] else None,
              "threads": torch.get_num_threads(), "device": device_name(),
              "seconds": round(time.perf_counter() - start, 1)}  # of the call that finished it
    write_file(folder / "sweep_run.json", json_text(record, indent=2))
    return record


def start_worker(threads, gpus):
    """A --jobs process: its share of the threads, its GPU; Ctrl-C is the grid's to handle (it ends us)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gpu = gpus.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before CUDA starts in this process
    torch.set_num_threads(threads)


def run_in_worker(task):
    """run_one in a --jobs process, its output in the run's folder (train.out), its errors one line."""
    index, (name, seed, folder, cfg, options, shared) = task
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.out", "a", encoding="utf-8") as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):
        try:
            return index, run_one(name, seed, folder, cfg, {**options, "progress": False}, shared)
        except (OSError, ValueError, KeyError, FloatingPointError) as e:
            raise ValueError(f"{folder}: {e} (its output: {folder / 'train.out'})") from None


def run_grid(plan, names, report, jobs=1, shared=None):
    """Run what the plan has not done, `jobs` at a time; after each run (so that a partial report survives a
    kill) report(runs, summary): every run's record so far, in the plan's order, and, per name, summarize()
    of the best STS-B dev, of its bootstrap half-width and of the test average. shared: the folder of the
    grid's step-0 evaluations (StartScores). Returns (runs, summary)."""
    records = {i: json.loads((p[2] / "sweep_run.json").read_text(encoding="utf-8"))
               for i, p in enumerate(plan) if p[-1]}
    todo = [(i, p[:-1] + (shared,)) for i, p in enumerate(plan) if not p[-1]]
    label = lambda i: f"[{i + 1}/{len(plan)}] {plan[i][0] or '(defaults)'} seed {plan[i][1]}"

    def results():
        runs = [records[j] for j in sorted(records)]
        at = lambda s, key: [r.get(key) for r in runs if r["setting"] == s]
        return runs, {s: {"stsb_dev": summarize(at(s, "stsb_dev")), "test_avg": summarize(at(s, "test_avg")),
                          "dev_half_width": summarize(at(s, "dev_half_width"))} for s in names}

    for i in records:
        print(f"{label(i)}: done before, skipped")
    if records:
        report(*results())
    if jobs == 1:  # in this process, one after another, with all its threads
        for i, (name, seed, folder, cfg, options, shared) in todo:
            print(label(i) + (": resuming" if options["resume"] else ""))
            records[i] = run_one(name, seed, folder, cfg, options, shared)
            report(*results())
    elif todo:
        gpus = torch.cuda.device_count()
        threads = max(1, torch.get_num_threads() // jobs)
        context = multiprocessing.get_context("spawn")  # a fresh process: its own threads, its own GPU
        queue = context.Queue()
        for j in range(jobs):
            queue.put(j % gpus if gpus else None)
        print(f"{len(todo)} runs, {jobs} at a time, each with {threads} thread(s)" + (
            f" and one of {gpus} GPUs" if gpus else "") + "; each run's output in its folder's train.out")
        with context.Pool(jobs, start_worker, (threads, queue)) as pool:  # ended (the runs killed) on error
            for i, record in pool.imap_unordered(run_in_worker, todo):
                print(f"{label(i)}: STS-B dev {record['stsb_dev']:.2f} (step {record['best_step']}) in "
                      f"{record['seconds']:.0f} s on {record['device']}, {record['threads']} thread(s)")
                records[i] = record
                report(*results())
    return results()


def write_report(out: Path, settings, runs, summary, command):
    report = {"command": command, "runs": runs, "summary": summary}
    write_file(out / "sweep.json", json_text(report, indent=2))
    base = summary[settings[0]]
    lines = ["| setting | n | best STS-B dev, mean ± std [min, max] | STS-B dev 95% ± | vs first setting "
             "| test Avg., mean ± std [min, max] |", "|---|---|---|---|---|---|"]
    for i, (s, v) in enumerate(summary.items()):
        half = v["dev_half_width"]["mean"]
        diff = "" if i == 0 else difference(v["stsb_dev"], base["stsb_dev"], half)
        lines.append(f"| `{s}` | {v['stsb_dev']['n']} | {cell(v['stsb_dev'])} | "
                     f"{'—' if half is None else f'{half:.2f}'} | {diff} | {cell(v['test_avg'])} |")
    table = "\n".join(lines)
    write_file(out / "sweep.md", f"`{command}`\n\n{table}\n\n{NOISE}\n")  # UTF-8, as every file: "±"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no sweep.png)")
        return table
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(settings)), 3.5))
    for i, s in enumerate(settings):
        error_bars(ax, i, [r["stsb_dev"] for r in runs if r["setting"] == s], summary[s], i == 0)
    ax.set_xticks(range(len(settings)), [s or "(defaults)" for s in settings], fontsize=8)
    ax.set_ylabel("best STS-B dev (Spearman x100)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=120)
    plt.close(fig)
    return table


NOISE = ("STS-B dev 95% ±: the half-width of the bootstrap 95% interval of STS-B dev's Spearman (1,500 "
         "pairs drawn again with replacement), the mean over the row's runs: how much a number owes to "
         "which pairs are in the dev set. A difference is ± its noise -- twice its standard error over the "
         "seeds or that half-width, whichever is larger -- and \"within noise\" when smaller than it: the "
         "two rows cannot be told apart.")


def error_bars(ax, x, values, summary, legend):
    """A row of a plot: its runs (dots), mean ± std over seeds, and the dev set's bootstrap half-width."""
    values = [v for v in values if v is not None]  # (a NaN evaluation is null in the JSON)
    ax.plot([x] * len(values), values, ".", color="gray")
    m, half = summary["stsb_dev"], summary["dev_half_width"]["mean"]
    if m["n"]:
        if half is not None:
            ax.errorbar(x, m["mean"], yerr=half, fmt="none", color="C1", alpha=0.5, elinewidth=6,
                        label="STS-B dev bootstrap 95%" if legend else None)
        ax.errorbar(x, m["mean"], yerr=m["std"] or 0, fmt="o", color="C0", capsize=4,
                    label="mean ± std over seeds (dots: runs)" if legend else None)
