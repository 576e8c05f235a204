r"""The paper's ablations, one command each: STS-B dev (Spearman x100) of every row of a table, ours over
seeds beside the paper's number (BERT-base).

    python ablate.py table3                                  # laptop defaults: the packaged MiniLM, CPU
    python ablate.py table3 --seeds 1 2 --max-steps 4 --batch-size 16 --eval-steps 2 --output-dir /tmp/t3
    python ablate.py table1 --model bert-base-uncased --max-steps 1000 --eval-steps 125   # the paper's, GPU

Tables: table1 (augmentations instead of dropout), table3 (dropout rates), table6 (poolers, unsupervised
and supervised), table7 (hard negatives), tableD1 (similarity and temperature), batch (Appendix A's batch
size x learning rate grid, no paper numbers), dropout (which kinds, layers and views of dropout do the work:
rows the paper does not have) and figure2 (alignment and uniformity every --eval-steps, drawn as the paper's
Figure 2). Unsupervised rows start from train.py's preset `quick`, supervised ones from
`quick-sup`; each row adds its flags (`python ablate.py TABLE --list` prints them). Table 1's augmentations
change both views, each with its own draw (train.py --augment-views 2, recorded in each run's run.json).

Each run is a run of train.py with --no-test, in its own folder <output-dir>/<row>/seed-<seed> (the runner in
grid.py): interrupted and started again, the command skips finished runs (refusing one made with other
settings) and resumes the interrupted one; --jobs N runs N at once, each with its share of the threads. A
row whose resource is missing (WordNet, an MLM head, neutral hypotheses) is reported as not run, with what
it needs. It writes <output-dir>/TABLE.md (setting | paper | ours mean ± std [min, max] | n | STS-B dev's
bootstrap half-width | difference to the table's default row ± its noise), TABLE.json (every run and every
number) and TABLE.png, and says the wall time.
"""
from formats.command_line import OUTPUT_FOLDER, SIZE, Distinct, Parser, command_errors, quiet_start, seed
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import argparse
import csv
import io
import json
import math
import shlex
import sys
import time
from collections import namedtuple
from pathlib import Path

from extras import augment
from infra import config
import data
from formats import training_files
from experiments import grid
from infra.cli import add_common_flags, json_text
from formats.files import write_file

Row = namedtuple("Row", "label flags paper why_not", defaults=(None,))  # paper: STS-B dev x100, BERT-base
UNSUP, SUP = "--preset quick", "--preset quick-sup"  # train.py's CPU-sized presets (config.PRESETS)
PAIRS = "entailment_pairs.csv"  # Table 7's "none": the supervised file without its hard negatives

DROPOUT_DEFAULT = "every dropout, p = 0.1"  # the dropout table's default row: Table 3's
# A table: sections of (name, base flags, default row, rows); laptop defaults (seeds, max steps, eval steps)
# chosen so that each table takes under 30 minutes on a 2-core CPU with the packaged model (see estimate).
TABLES = {
    "table1": dict(title="Table 1: data augmentations instead of dropout (unsupervised)",
                   seeds=(1, 2, 3), steps=80, eval_steps=40, sections=[("", UNSUP, "none (unsup. SimCSE)", [
                       Row("none (unsup. SimCSE)", "", 82.5),
                       Row("crop 10%", "--augment crop:0.1", 77.8),
                       Row("crop 20%", "--augment crop:0.2", 71.4),
                       Row("crop 30%", "--augment crop:0.3", 63.6),
                       Row("word deletion 10%", "--augment word_deletion:0.1", 75.9),
                       Row("word deletion 20%", "--augment word_deletion:0.2", 72.2),
                       Row("word deletion 30%", "--augment word_deletion:0.3", 68.2),
                       Row("delete one word", "--augment delete_one_word", 75.9),
                       Row("delete one word, w/o dropout", "--augment delete_one_word --dropout 0", 74.2),
                       Row("synonym replacement", "--augment synonym", 77.4),
                       Row("MLM 15%", "--augment mlm:0.15", 62.2)])]),
    "table3": dict(title="Table 3: dropout probability p (unsupervised)",
                   seeds=(1, 2, 3), steps=80, eval_steps=40, sections=[("", UNSUP, "p = 0.1", [
                       Row("p = 0", "--dropout 0", 71.1),
                       Row("p = 0.01", "--dropout 0.01", 72.6),
                       Row("p = 0.05", "--dropout 0.05", 81.1),
                       Row("p = 0.1", "--dropout 0.1", 82.5),
                       Row("p = 0.15", "--dropout 0.15", 81.4),
                       Row("p = 0.2", "--dropout 0.2", 80.5),
                       Row("p = 0.5", "--dropout 0.5", 71.0),
                       Row("fixed 0.1", "--dropout 0.1 --fixed-mask", 43.6)])]),
    "table6": dict(title="Table 6: poolers (unsupervised and supervised)",
                   seeds=(1, 2, 3), steps=80, eval_steps=40, sections=[
                       (section, base, default, [
                           Row("[CLS] w/ MLP", "--pooler cls --no-mlp-only-train", unsup_sup[0]),
                           Row("[CLS] w/ MLP (train)", "--pooler cls --mlp-only-train", unsup_sup[1]),
                           Row("[CLS] w/o MLP", "--pooler cls_before_pooler", unsup_sup[2]),
                           Row("first-last avg.", "--pooler avg_first_last", unsup_sup[3])])
                       for section, base, default, unsup_sup in [
                           ("unsup", UNSUP, "[CLS] w/ MLP (train)", (81.7, 82.5, 80.9, 81.2)),
                           ("sup", SUP, "[CLS] w/ MLP", (86.2, 85.8, 86.2, 86.1))]]),
    # alpha multiplies e^sim of an anchor's own hard negative (eq. 5); the authors' code adds its log.
    "table7": dict(title="Table 7: hard negatives (supervised)",
                   seeds=(1, 2, 3), steps=150, eval_steps=50, sections=[("", SUP, "alpha = 1", [
                       Row("none (entailment pairs only)", "--train-file {pairs}", 84.9),
                       Row("contradiction + neutral", None, 85.3,
                           "needs a neutral hypothesis for every premise, which the authors' NLI file does "
                           "not carry (sent0,sent1,hard_neg: entailment and contradiction only)"),
                       Row("alpha = 0.5", f"--hard-negative-weight {math.log(0.5)!r}", 86.1),
                       Row("alpha = 1", "--hard-negative-weight 0", 86.2),
                       Row("alpha = 2", f"--hard-negative-weight {math.log(2)!r}", 86.2)])]),
    # Table D.1's "N/A" column is the dot product with no temperature: tau = 1.
    "tableD1": dict(title="Table D.1: similarity function and temperature tau (supervised)",
                    seeds=(1, 2, 3), steps=100, eval_steps=50, sections=[("", SUP, "cos, tau = 0.05", [
                        Row("dot product (tau: N/A)", "--similarity dot --temp 1", 85.9),
                        Row("cos, tau = 0.001", "--temp 0.001", 84.9),
                        Row("cos, tau = 0.01", "--temp 0.01", 85.4),
                        Row("cos, tau = 0.05", "--temp 0.05", 86.2),
                        Row("cos, tau = 0.1", "--temp 0.1", 82.0),
                        Row("cos, tau = 1", "--temp 1", 64.0)])]),
    # Appendix A: the paper reports only that SimCSE is not sensitive to these. The row's --batch-size wins.
    "batch": dict(title="Appendix A: batch size x learning rate (unsupervised)",
                  seeds=(1, 2), steps=30, eval_steps=15, sections=[("", UNSUP, "batch 64, lr 3e-5", [
                      Row(f"batch {b}, lr {lr}", f"--batch-size {b} --lr {lr}", None)
                      for b in (64, 128, 256, 512) for lr in ("1e-5", "3e-5", "5e-5")])]),
    # Which dropout does the work: no paper numbers (the paper varies only p, all kinds together).
    "dropout": dict(title="Dropout: which kinds, which layers, which views (unsupervised; not in the paper)",
                    seeds=(1, 2, 3), steps=80, eval_steps=40, sections=[("", UNSUP, DROPOUT_DEFAULT, [
                        Row(DROPOUT_DEFAULT, "--dropout 0.1", None),
                        Row("no dropout", "--dropout 0", None),
                        Row("attention only", "--hidden-dropout 0 --embedding-dropout 0", None),
                        Row("hidden only", "--attention-dropout 0 --embedding-dropout 0", None),
                        Row("embeddings only", "--hidden-dropout 0 --attention-dropout 0", None),
                        Row("top 3 layers only", "--dropout-layers top:3 --embedding-dropout 0", None),
                        Row("bottom 3 layers + embeddings", "--dropout-layers bottom:3", None),
                        Row("one view clean (0.1, 0)", "--view-dropout 0.1 0", None)])]),
    "figure2": dict(title="Figure 2: alignment and uniformity while training (unsupervised)",
                    seeds=(1, 2, 3), steps=100, eval_steps=10, sections=[("", UNSUP, "unsup. SimCSE", [
                        Row("unsup. SimCSE", "", None),
                        Row("no dropout", "--dropout 0", None),
                        Row("fixed 0.1", "--dropout 0.1 --fixed-mask", None),
                        Row("delete one word", "--augment delete_one_word", None)])]),
}
STEP_SECONDS, EVAL_SECONDS, RUN_SECONDS = 0.45, 4.5, 8  # a guess for this CPU (see estimate)


def rows(table, model=None):
    """(section, base flags, Row, name, why not) of every row: name is unique in the table; why not: None if
    the row can run here on `model` (None: the packaged one), else what it needs."""
    for section, base, default, section_rows in TABLES[table]["sections"]:
        for row in section_rows:
            why_not = row.why_not
            if row.flags and "--augment" in row.flags:  # WordNet, an MLM head: on this machine?
                flags = row.flags.split()
                why_not = augment.unavailable(flags[flags.index("--augment") + 1], model)
            yield section, base, row, f"{section}: {row.label}" if section else row.label, why_not


def train_argv(base, row, out):
    """A row's train.py flags as a list of values (never a string split again): the table's text split at its
    spaces, `{pairs}` replaced by the path of Table 7's pairs file, whole (spaces, backslashes and all)."""
    return [str(out / PAIRS) if item == "{pairs}" else item for item in f"{base} {row.flags}".split()]


def default_name(table, section):
    default = next(d for s, _, d, _ in TABLES[table]["sections"] if s == section)
    return f"{section}: {default}" if section else default


def estimate(plan):
    """Seconds for the runs not done, at a bf16 step of 64 sentences in STEP_SECONDS (three views: 15%
    more), an STS-B dev evaluation and its checkpoints in EVAL_SECONDS, loading in RUN_SECONDS: the packaged
    MiniLM on a 2-core CPU with AMX (`python -m bench train`). Other models and machines: scale it."""
    total = 0.0
    for _, _, _, cfg, _, done in plan:
        views = 1.15 if cfg.train_file.lower().endswith(".csv") else 1.0
        evaluations = cfg.max_steps // cfg.eval_steps + 1
        total += 0 if done else (RUN_SECONDS + cfg.max_steps * STEP_SECONDS * cfg.batch_size / 64 * views
                                 + evaluations * EVAL_SECONDS)
    return total


def write_entailment_pairs(out, data_dir):
    """Table 7's "none": premises and their entailments of the supervised file, without the hard negatives."""
    path = data.training_file(config.PRESETS["quick-sup"]["train_file"], data_dir)
    text = io.StringIO()
    pairs = [row[:2] for row in training_files.read_nli_csv(path)[0]]
    csv.writer(text, lineterminator="\n").writerows([("sent0", "sent1")] + pairs)
    write_file(out / PAIRS, text.getvalue())


def log_of(run):
    log = Path(run["folder"]) / "log.jsonl"
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def trajectory(runs):
    """(step, alignment, uniformity) at each evaluation, the mean over the seeds that reached it with finite
    values (null in log.jsonl: a NaN); a step without any is left out."""
    logs = [log_of(r) for r in runs]
    steps = sorted({rec["step"] for log in logs for rec in log})
    at = lambda key, step: [rec[key] for log in logs for rec in log
                            if rec["step"] == step and rec.get(key) is not None]
    return [(s, sum(at("align", s)) / len(at("align", s)), sum(at("uniform", s)) / len(at("uniform", s)))
            for s in steps if at("align", s) and at("uniform", s)]


def write_report(out, table, listed, runs, summary, command, wall):
    """TABLE.json, TABLE.md and TABLE.png from the runs so far (called after every run)."""
    spec = TABLES[table]
    report_rows, none = [], grid.summarize([])
    for section, _, row, name, why_not in listed:
        ours = summary.get(name, {}).get("stsb_dev", none)
        half = summary.get(name, {}).get("dev_half_width", none)["mean"]
        base = summary.get(default_name(table, section), {}).get("stsb_dev", none)
        paper_base = next(r.paper for _, _, r, n, _ in listed if n == default_name(table, section))
        report_rows.append({
            "section": section, "label": row.label, "name": name, "paper": row.paper,
            "flags": row.flags and row.flags.format(pairs=f"<output-dir>/{PAIRS}"),
            "default": name == default_name(table, section), "not_run": why_not, "ours": ours,
            "dev_half_width": half, "diff_to_default": ours["mean"] - base["mean"] if ours["n"] and base["n"]
            else None, "noise": grid.noise(ours, base, half) if ours["n"] and base["n"] else None,
            "diff_cell": grid.difference(ours, base, half),
            "paper_diff_to_default": row.paper - paper_base if row.paper is not None else None})
    seconds = sum(r.get("seconds", 0) for r in runs)
    result = {"table": table, "title": spec["title"], "command": command, "rows": report_rows, "runs": runs,
              "wall_seconds": round(wall, 1), "runs_seconds": round(seconds, 1)}
    if table == "figure2":
        result["trajectories"] = {r["name"]: trajectory([x for x in runs if x["setting"] == r["name"]])
                                  for r in report_rows if any(x["setting"] == r["name"] for x in runs)}
    write_file(out / f"{table}.json", json_text(result, indent=2))

    number = lambda x, sign="": "—" if x is None else f"{x:{sign}.2f}"
    paper = any(r["paper"] is not None for r in report_rows)  # a table the paper does not have: no column
    lines = ["| setting | train.py flags " + ("| paper " if paper else "") + "| ours, mean ± std [min, max] "
             "| n | STS-B dev 95% ± | vs default: ours ± noise" + (" (paper)" if paper else "") + " |",
             "|---|---|---|---|---|---|" + ("---|" if paper else "")]
    for r in report_rows:
        label = f"{r['section']}: {r['label']}" if r["section"] else r["label"]
        label = f"**{label}** (default)" if r["default"] else label
        flags = f"`{r['flags']}`" if r["flags"] else ("(none)" if r["flags"] == "" else "—")
        ours = f"not run: {r['not_run']}" if r["not_run"] else grid.cell(r["ours"])
        diff = "" if r["default"] else r["diff_cell"] + (
            f" ({number(r['paper_diff_to_default'], '+')})" if paper else "")
        lines.append(f"| {label} | {flags} | " + (f"{number(r['paper'])} | " if paper else "") +
                     f"{ours} | {r['ours']['n']} | {number(r['dev_half_width'])} | {diff} |")
    source = ("the paper's numbers are BERT-base" if paper else
              "the paper has no such rows: it varies only p, every kind of dropout together (Table 3)")
    markdown = (f"# {spec['title']}\n\nSTS-B dev, Spearman x100: the best of each run's evaluations; "
                f"{source}.\n\n`{command}`\n\n" + "\n".join(lines) + f"\n\n{grid.NOISE}\n\n"
                f"Wall time: {wall:.0f} s for this command; {seconds:.0f} s in the runs' own calls.\n")
    write_file(out / f"{table}.md", markdown)
    plot(out, table, report_rows, runs, result.get("trajectories"), summary)
    return "\n".join(lines)


def plot(out, table, report_rows, runs, trajectories, summary):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(matplotlib is not installed: no {table}.png)")
        return
    if trajectories is not None:  # Figure 2: (uniformity, alignment) paths, arrows in the direction of time
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for i, (name, points) in enumerate(trajectories.items()):
            x, y = [p[2] for p in points], [p[1] for p in points]
            ax.plot(x, y, ".", color=f"C{i}", label=name)
            for j in range(len(points) - 1):
                ax.annotate("", xy=(x[j + 1], y[j + 1]), xytext=(x[j], y[j]),
                            arrowprops=dict(arrowstyle="->", color=f"C{i}"))
        ax.set_xlabel("uniformity l_uniform (lower is better)")
        ax.set_ylabel("alignment l_align (lower is better)")
        ax.legend(fontsize=8, title="on STS-B dev, mean over seeds", title_fontsize=8)
    else:
        fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(report_rows)), 4.5))
        none = {"stsb_dev": grid.summarize([]), "dev_half_width": grid.summarize([])}
        for i, r in enumerate(report_rows):  # runs, mean ± std, the dev set's bootstrap half-width
            grid.error_bars(ax, i, [x["stsb_dev"] for x in runs if x["setting"] == r["name"]],
                            summary.get(r["name"], none), i == 0)
            if r["paper"] is not None:
                ax.plot(i, r["paper"], "x", color="C3", markersize=8,
                        label="paper (BERT-base)" if not any(x["paper"] is not None
                                                             for x in report_rows[:i]) else None)
            if r["not_run"]:
                ax.annotate("not run", (i, r["paper"] if r["paper"] is not None else 0), fontsize=7,
                            rotation=90, va="top", ha="center", xytext=(0, -8), textcoords="offset points")
        names = [f"{r['section']}: {r['label']}" if r["section"] else r["label"] for r in report_rows]
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("best STS-B dev (Spearman x100)")
        ax.legend(fontsize=8)
    ax.set_title(TABLES[table]["title"], fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"{table}.png", dpi=120)
    plt.close(fig)


SWEEP_HELP = """Seed sweeps: a grid of settings x seeds of train.py, summarised as mean +- std.

    python ablate.py sweep --seeds 1 2 3 --settings "--dropout 0" "--dropout 0.1 --fixed-mask" \\
        --output-dir runs/p --max-steps 40 --batch-size 32 --no-test

A setting is a string of train.py flags; every other flag (here --max-steps, --batch-size, --no-test) is
passed to every run. It writes <output-dir>/sweep.json (every run's numbers and, per setting, n, mean, sample
std, min and max of the best STS-B dev score after training -- step 0 not counted -- and of the seven-task
test average), sweep.md (the table) and sweep.png."""


def sweep(argv):
    parser = Parser(prog="ablate.py sweep", description=SWEEP_HELP,
                    formatter_class=argparse.RawDescriptionHelpFormatter)  # (formats/command_line.py)
    parser.add_argument("--seeds", type=SEED, nargs="+", required=True, action=Distinct,
                        help="the seeds of each setting")
    parser.add_argument("--settings", nargs="+", default=[""], metavar="FLAGS",
                        help='one string of train.py flags per setting, e.g. "--dropout 0.1 --fixed-mask" '
                             '(a lone flag needs a space: " --fixed-mask")')
    parser.add_argument("--output-dir", required=True, type=OUTPUT_FOLDER,
                        help="the sweep's folder; each run gets a folder inside")
    add_jobs_flag(parser)
    args, common = parser.parse_known_args(argv)
    out = Path(args.output_dir)
    if len(set(map(grid.folder_name, args.settings))) < len(args.settings):
        raise SystemExit("error: two settings give the same folder name; make them differ")
    settings = [(s, grid.folder_name(s), shlex.split(s)) for s in args.settings]  # as a shell splits them
    plan = grid.plan_grid(out, settings, args.seeds, common)
    out.mkdir(parents=True, exist_ok=True)
    command = "python ablate.py sweep " + shlex.join(argv)
    report = lambda runs, summary: grid.write_report(out, args.settings, runs, summary, command)
    print(report(*grid.run_grid(plan, args.settings, report, args.jobs, out / START_SCORES)))  # (each run's)
    print(f"written: {out / 'sweep.json'}, {out / 'sweep.md'}")


def main(argv=None):
    """`python ablate.py TABLE ...`, or `python ablate.py sweep ...`: any settings x seeds."""
    argv = sys.argv[1:] if argv is None else argv
    with command_errors("nothing is lost; run the same command again to go on"):
        return sweep(argv[1:]) if argv[:1] == ["sweep"] else run_table(argv)


def run_table(argv):
    defaults = ("python ablate.py sweep --help: a sweep of any settings x seeds.\n\n"
                "laptop defaults (--batch-size 64):") + "".join(
        f"\n  {name}: --seeds {' '.join(map(str, t['seeds']))} --max-steps {t['steps']} "
        f"--eval-steps {t['eval_steps']}" for name, t in TABLES.items())
    parser = Parser(description=__doc__, epilog=defaults,
                    formatter_class=argparse.RawDescriptionHelpFormatter)  # (formats/command_line.py)
    parser.add_argument("table", choices=TABLES)
    parser.add_argument("--seeds", type=SEED, nargs="+", action=Distinct,
                        help="the seeds of each row (default: the table's)")
    parser.add_argument("--max-steps", type=SIZE, help="updates of each run (default: the table's)")
    parser.add_argument("--eval-steps", type=SIZE, help="STS-B dev every N steps (default: the table's)")
    parser.add_argument("--batch-size", type=SIZE, default=64, help="examples per batch (default 64; the "
                                                                    "batch table sets its own)")
    add_common_flags(parser, pooler=False, precision=None)  # passed on to train.py
    parser.add_argument("--output-dir", type=OUTPUT_FOLDER, help="the table's folder (default: runs/TABLE)")
    parser.add_argument("--list", action="store_true", help="print the rows and their flags; run none")
    add_jobs_flag(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table, spec = args.table, TABLES[args.table]
    out = Path(args.output_dir or f"runs/{table}")
    listed = list(rows(table, args.model))
    if args.list:
        for _, base, row, name, why_not in listed:
            print(f"{name}: paper {row.paper}; "
                  + (f"not run: {why_not}" if why_not else f"{base} {row.flags}"))
        return
    common = {"--max-steps": str(args.max_steps or spec["steps"]), "--batch-size": str(args.batch_size),
              "--eval-steps": str(args.eval_steps or spec["eval_steps"])}  # (0 is refused as it is read)
    for flag in ("model", "precision", "data_dir"):
        if getattr(args, flag) is not None:
            common["--" + flag.replace("_", "-")] = getattr(args, flag)

    def train_flags(base, row):  # a row's own flags win over the common ones (the batch table's --batch-size)
        own = train_argv(base, row, out)
        return [x for flag, value in common.items() if flag not in own for x in (flag, value)] + own
    settings = [(name, grid.folder_name(name), train_flags(base, row) + ["--no-test"])
                for _, base, row, name, why_not in listed if why_not is None]
    plan = grid.plan_grid(out, settings, args.seeds or spec["seeds"], [])  # every run checked first
    left = sum(not p[-1] for p in plan)
    print(f"{table}: {len(plan)} runs ({len(plan) - left} done before), {len(listed) - len(settings)} row(s) "
          f"not run; about {estimate(plan) / 60:.0f} min for the {left} left one at a time (a guess for the "
          f"packaged MiniLM on a 2-core CPU in bf16)")
    for _, _, _, name, why_not in listed:
        if why_not:
            print(f"  {name}: not run: {why_not}")
    out.mkdir(parents=True, exist_ok=True)
    if any(str(out / PAIRS) in flags for _, _, flags in settings):  # (a value of the list)
        write_entailment_pairs(out, args.data_dir)
    command = "python ablate.py " + shlex.join(argv)
    report = lambda runs, summary: write_report(out, table, listed, runs, summary, command,
                                                time.perf_counter() - start)
    print(report(*grid.run_grid(plan, [s[0] for s in settings], report, args.jobs, out / START_SCORES)))
    print(f"written: {out / table}.md, .json, .png in {time.perf_counter() - start:.0f} s")


START_SCORES = ".start_scores"  # in a grid's folder: its evaluations of starting models (step 0), shared


SEED = seed(2**63)  # torch.manual_seed's range


def add_jobs_flag(parser):
    parser.add_argument("--jobs", type=SIZE, default=1, metavar="N",
                        help="runs at once, each in a process of its own with 1/N of the CPU's threads (or "
                             "its own GPU where there are several); default 1: one after another, here")


if __name__ == "__main__":
    main()
