"""STS evaluation as in the SimCSE paper (section 6.1; Table 5): Spearman correlation x100 between the cosine
similarity of two sentence embeddings and the gold score, on STS12-16, STS-B and SICK-R.

Numbers match the authors' SentEval-based evaluation: STS12-16 in the "all" setting (the subsets of a year
concatenated; --aggregate wmean: SentEval's mean of the subsets weighted by their sizes), STS-B and SICK-R on
their test splits, "Avg." over the seven. --mode dev reports the STS-B dev set (and SICK-R trial), which
training uses for model selection. --pairs scores your own files of sentence pairs, with a bootstrap 95%
interval: how far another sample of as many pairs could move the number.

    python eval_sts.py --model bert-base-uncased --pooler avg
    python eval_sts.py --model runs/quick/best --json scores.json  # the pooler the checkpoint was trained for
    python eval_sts.py --model runs/quick/best --pairs my_pairs.csv   # header: sentence1,sentence2,score
"""
from formats.command_line import INPUT_FILE, OUTPUT_FILE, SIZE, Distinct, Parser, command_errors, quiet_start
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, rankdata, spearmanr

import data
from formats.checkpoint import default_model
from formats.files import write_file
from formats.senteval import STS_TASKS, STS_YEARS, STSPairs, read_pairs
from infra.cli import add_common_flags, device, json_text
from simcse import alignment, uniformity
from tool import encode, load_for_evaluation


def splits_to_score(task, mode):
    """The subsets (STS12-16, all of them) or splits (STS-B, SICK-R) that a mode reports."""
    if task in STS_YEARS:
        return STS_YEARS[task]
    return ["dev"] if mode == "dev" else ["test"]


def correlations(predicted, gold):
    return {"spearman": 100 * spearmanr(predicted, gold)[0], "pearson": 100 * pearsonr(predicted, gold)[0],
            "n": len(gold)}


def bootstrap(predicted, gold, resamples=1000, seed=0):
    """{"spearman": [low, high], "pearson": [low, high]}: 95% intervals (x100) of the correlations over sets
    of as many pairs drawn with replacement (the percentile bootstrap; a fixed seed, so the same interval
    each time): how much the number owes to which pairs happen to be in the set."""
    predicted, gold, n = np.asarray(predicted, np.float64), np.asarray(gold, np.float64), len(gold)
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    rows = lambda x, y: ((x - x.mean(1, keepdims=True)) * (y - y.mean(1, keepdims=True))).sum(1) / (
        x.std(1) * y.std(1) * n)  # Pearson's r of each row
    found = {"spearman": [], "pearson": []}
    for part in np.array_split(draws, max(1, resamples * n // 10**7)):  # about 80 MB at a time
        x, y = predicted[part], gold[part]
        found["spearman"].append(rows(rankdata(x, axis=1), rankdata(y, axis=1)))  # ties: mean ranks
        found["pearson"].append(rows(x, y))
    return {k: [100 * float(q) for q in np.nanpercentile(np.concatenate(v), [2.5, 97.5])]
            for k, v in found.items()}


def cosine_scores(embeddings, pairs: STSPairs):
    a, b = F.normalize(embeddings[pairs.sent1], dim=-1), F.normalize(embeddings[pairs.sent2], dim=-1)
    return (a * b).sum(-1).numpy()


def similarities(model, tokenizer, pairs, pooler, batch_size=128, progress=False, precision="fp32"):
    """{key: the cosine similarity of each pair} for {key: STSPairs}: every distinct sentence encoded once,
    all sets together."""
    sentences = list(dict.fromkeys(s for p in pairs.values() for s in p.sent1 + p.sent2))
    index = {s: i for i, s in enumerate(sentences)}
    embeddings = encode(model, tokenizer, sentences, pooler, batch_size, progress=progress,
                        precision=precision)
    return {key: cosine_scores(embeddings, STSPairs([index[s] for s in p.sent1], [index[s] for s in p.sent2],
                                                    p.scores)) for key, p in pairs.items()}


def evaluate(model, tokenizer, pooler="cls", mode="test", tasks=None, data_dir=None, batch_size=128,
             progress=False, precision="fp32", aggregate="all"):
    """{"scores": {task: headline Spearman x100, ..., "Avg": ...}, "details": {task: {subset: {...}}}};
    aggregate: STS12-16's headline, "all" (the subsets concatenated) or "wmean" (SentEval's weighted mean)."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"--aggregate {aggregate}: expected one of {', '.join(AGGREGATES)}")
    tasks = tasks_of(mode, tasks)
    pairs = {}  # (task, subset) -> STSPairs
    for task in tasks:
        loaded = data.load_sts(task, data_dir, None if task in STS_YEARS else splits_to_score(task, mode))
        for subset in splits_to_score(task, mode):
            pairs[task, subset] = loaded[subset]
    sims = similarities(model, tokenizer, pairs, pooler, batch_size, progress, precision)

    scores, details = {}, {}
    for task in tasks:
        details[task] = {}
        for subset in splits_to_score(task, mode):
            details[task][subset] = correlations(sims[task, subset], pairs[task, subset].scores)
        if task in STS_YEARS:
            subsets = [details[task][s] for s in splits_to_score(task, mode)]
            details[task]["all"] = correlations(np.concatenate([sims[task, s] for s in STS_YEARS[task]]),
                                                [g for s in STS_YEARS[task] for g in pairs[task, s].scores])
            total = sum(d["n"] for d in subsets)  # SentEval's wmean: each subset weighted by its pairs
            details[task]["wmean"] = {k: sum(d[k] * d["n"] for d in subsets) / total
                                      for k in ("spearman", "pearson")} | {"n": total}
            scores[task] = details[task][aggregate]["spearman"]
        else:
            scores[task] = details[task][splits_to_score(task, mode)[0]]["spearman"]
    if mode == "test":
        # As the authors' evaluation.py: the mean of the scores as printed, rounded to 2 decimals.
        scores["Avg"] = sum(round(scores[t], 2) for t in tasks) / len(tasks)
    return {"mode": mode, "pooler": pooler, "precision": precision, "aggregate": aggregate, "scores": scores,
            "details": details}


AGGREGATES = ("all", "wmean")


def tasks_of(mode, tasks=None):
    """The tasks a mode evaluates: `tasks`, or all of the mode's."""
    if mode not in ("test", "dev"):
        raise ValueError(f"mode must be 'test' or 'dev', not {mode!r}")
    if len(set(tasks or ())) < len(tasks or ()):  # a task twice would count twice in Avg.
        raise ValueError(f"tasks {' '.join(tasks)}: a task given twice")
    if mode == "dev" and set(tasks or ()) & set(STS_YEARS):
        raise ValueError("STS12-16 have no dev split; --mode dev evaluates STSBenchmark and SICKRelatedness")
    return tasks or (STS_TASKS if mode == "test" else ["STSBenchmark", "SICKRelatedness"])


def evaluate_pairs(model, tokenizer, files, pooler="cls", batch_size=128, progress=False, precision="fp32"):
    """{path: {"spearman", "pearson" (x100), "n", "spearman_ci95", "pearson_ci95"}} for {path: STSPairs} of
    your own files (formats/senteval.read_pairs): encoded and scored as evaluate() scores STS-B."""
    sims = similarities(model, tokenizer, files, pooler, batch_size, progress, precision)
    return {path: {**correlations(sims[path], p.scores),
                   **{f"{k}_ci95": v for k, v in bootstrap(sims[path], p.scores).items()}}
            for path, p in files.items()}


def dev_metrics(model, tokenizer, dev: STSPairs, pooler, key="stsb_dev"):
    """What training selects models by: the dev set's (STS-B dev's, or train.py --dev-file's) Spearman x100
    as `key`, its bootstrap 95% interval as key_ci95, and the analysis of section 2 on it -- alignment (pairs
    in the top fifth of the gold scale: above 4 of STS-B's 0-5) and uniformity (all its sentences)."""
    sentences = list(dict.fromkeys(dev.sent1 + dev.sent2))
    z = F.normalize(encode(model, tokenizer, sentences, pooler), dim=-1)
    index = {s: i for i, s in enumerate(sentences)}
    a, b = z[[index[s] for s in dev.sent1]], z[[index[s] for s in dev.sent2]]
    gold = torch.tensor(dev.scores)
    positive = gold > gold.min() + 0.8 * (gold.max() - gold.min())
    sims = (a * b).sum(-1).numpy()
    return {key: 100 * spearmanr(sims, dev.scores)[0], f"{key}_ci95": bootstrap(sims, dev.scores)["spearman"],
            "align": alignment(a[positive], b[positive]), "uniform": uniformity(z)}


def format_table(scores):
    names = [("Avg." if k == "Avg" else k) for k in scores]
    cells = [f"{v:.2f}" for v in scores.values()]
    widths = [max(len(n), len(c)) + 2 for n, c in zip(names, cells)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"
    row = lambda xs: "|" + "|".join(x.center(w) for x, w in zip(xs, widths)) + "|"
    return "\n".join([rule, row(names), rule, row(cells), rule])


def main(argv=None):
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)  # every flag checked as it is read (formats/command_line.py)
    parser.add_argument("--mode", default="test", choices=["test", "dev"],
                        help="test: the seven test numbers; dev: STS-B dev and SICK-R trial (default: test)")
    parser.add_argument("--tasks", nargs="+", choices=STS_TASKS, action=Distinct,
                        help="a subset of the tasks (default: all of the mode's)")
    parser.add_argument("--pairs", nargs="+", metavar="FILE", type=INPUT_FILE, action=Distinct,
                        help="score these files of sentence pairs instead of the tasks: .csv or .tsv, "
                             "a header naming sentence1, sentence2 and score")
    parser.add_argument("--aggregate", default="all", choices=AGGREGATES,
                        help="STS12-16's number: all (the subsets concatenated, the paper's; default) or "
                             "wmean (SentEval's mean of the subsets weighted by their pairs)")
    parser.add_argument("--json", metavar="PATH", type=OUTPUT_FILE,
                        help="also write every number to this JSON file")
    parser.add_argument("--batch-size", type=SIZE, default=128,
                        help="sentences per forward pass (default: 128)")
    parser.add_argument("--subsets", action="store_true", help="also print each STS12-16 subset")
    args = parser.parse_args(argv)

    model_name = args.model or default_model()
    with command_errors():
        tasks_of(args.mode, args.tasks)  # before the model is loaded
        if args.pairs and args.tasks:
            raise ValueError("--pairs scores your files instead of the tasks: give --tasks or --pairs")
        files = {path: read_pairs(path) for path in args.pairs or ()}  # refused before any loading
        model, tokenizer, pooler = load_for_evaluation(model_name, args.pooler, device())
        start = time.perf_counter()
        if files:
            results = {"pooler": pooler, "precision": args.precision, "pairs": evaluate_pairs(
                model, tokenizer, files, pooler, args.batch_size, progress=True, precision=args.precision)}
        else:
            results = evaluate(model, tokenizer, pooler, args.mode, args.tasks, args.data_dir,
                               args.batch_size, progress=True, precision=args.precision,
                               aggregate=args.aggregate)
        seconds = time.perf_counter() - start
        what = "pairs" if files else args.mode
        print(f"------ {what} | {model_name} | pooler {pooler} | {seconds:.1f}s ------")
        if files:
            interval = lambda r, k: f"{r[k]:.2f} [{r[k + '_ci95'][0]:.2f}, {r[k + '_ci95'][1]:.2f}]"
            for path, r in results["pairs"].items():  # x100, with the bootstrap 95% interval
                print(f"{path}: {r['n']} pairs, Spearman {interval(r, 'spearman')}, "
                      f"Pearson {interval(r, 'pearson')} (x100, bootstrap 95% interval)")
        else:
            print(format_table(results["scores"]))
        if args.subsets and not files:
            for task, subsets in results["details"].items():
                print(task + ": " + ", ".join(f"{k} {v['spearman']:.2f}" for k, v in subsets.items()))
        if args.json:  # whole, or not at all (formats/files.py)
            write_file(args.json, json_text({"model": model_name, "seconds": seconds, **results}, indent=2))


if __name__ == "__main__":
    main()
