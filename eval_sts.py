"""STS evaluation as in the SimCSE paper (section 5.1): Spearman correlation x100 between the cosine
similarity of two sentence embeddings and the gold score, on STS12-16, STS-B and SICK-R.

Numbers match the authors' SentEval-based evaluation: STS12-16 in the "all" setting (the subsets of a year
concatenated), STS-B and SICK-R on their test splits, "Avg." over the seven. --mode dev reports the STS-B
dev set (and SICK-R trial), which training uses for model selection.

    python eval_sts.py --model bert-base-uncased --pooler avg
    python eval_sts.py --model runs/quick/best --json scores.json  # the pooler the checkpoint was trained for
"""
from formats.command_line import OUTPUT_FILE, SIZE, Distinct, Parser, command_errors, quiet_start
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr

import data
from formats.checkpoint import default_model
from formats.files import write_file
from infra.cli import add_common_flags, device, json_text
from formats.senteval import STS_TASKS, STS_YEARS, STSPairs
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


def cosine_scores(embeddings, pairs: STSPairs):
    a, b = F.normalize(embeddings[pairs.sent1], dim=-1), F.normalize(embeddings[pairs.sent2], dim=-1)
    return (a * b).sum(-1).numpy()


def evaluate(model, tokenizer, pooler="cls", mode="test", tasks=None, data_dir=None, batch_size=128,
             progress=False, precision="fp32"):
    """{"scores": {task: headline Spearman x100, ..., "Avg": ...}, "details": {task: {subset: {...}}}}."""
    tasks = tasks_of(mode, tasks)
    pairs = {}  # (task, subset) -> STSPairs
    for task in tasks:
        loaded = data.load_sts(task, data_dir, None if task in STS_YEARS else splits_to_score(task, mode))
        for subset in splits_to_score(task, mode):
            pairs[task, subset] = loaded[subset]

    # Encode every distinct sentence once, all tasks together.
    sentences = list(dict.fromkeys(s for p in pairs.values() for s in p.sent1 + p.sent2))
    index = {s: i for i, s in enumerate(sentences)}
    embeddings = encode(model, tokenizer, sentences, pooler, batch_size, progress=progress,
                        precision=precision)
    indexed = {key: STSPairs([index[s] for s in p.sent1], [index[s] for s in p.sent2], p.scores)
               for key, p in pairs.items()}

    scores, details = {}, {}
    for task in tasks:
        details[task] = {}
        predicted, gold = [], []
        for subset in splits_to_score(task, mode):
            p = indexed[task, subset]
            sims = cosine_scores(embeddings, p)
            details[task][subset] = correlations(sims, p.scores)
            predicted.append(sims)
            gold += p.scores
        if task in STS_YEARS:
            details[task]["all"] = correlations(np.concatenate(predicted), gold)  # the "all" setting
            scores[task] = details[task]["all"]["spearman"]
        else:
            scores[task] = details[task][splits_to_score(task, mode)[0]]["spearman"]
    if mode == "test":
        # As the authors' evaluation.py: the mean of the scores as printed, rounded to 2 decimals.
        scores["Avg"] = sum(round(scores[t], 2) for t in tasks) / len(tasks)
    return {"mode": mode, "pooler": pooler, "precision": precision, "scores": scores, "details": details}


def tasks_of(mode, tasks=None):
    """The tasks a mode evaluates: `tasks`, or all of the mode's."""
    if mode not in ("test", "dev"):
        raise ValueError(f"mode must be 'test' or 'dev', not {mode!r}")
    if len(set(tasks or ())) < len(tasks or ()):  # a task twice would count twice in Avg.
        raise ValueError(f"tasks {' '.join(tasks)}: a task given twice")
    if mode == "dev" and set(tasks or ()) & set(STS_YEARS):
        raise ValueError("STS12-16 have no dev split; --mode dev evaluates STSBenchmark and SICKRelatedness")
    return tasks or (STS_TASKS if mode == "test" else ["STSBenchmark", "SICKRelatedness"])


def dev_metrics(model, tokenizer, dev: STSPairs, pooler):
    """What training selects models by: STS-B dev Spearman x100, and the analysis of section 5 on it --
    alignment (pairs with a gold score above 4) and uniformity (all its sentences)."""
    sentences = list(dict.fromkeys(dev.sent1 + dev.sent2))
    z = F.normalize(encode(model, tokenizer, sentences, pooler), dim=-1)
    index = {s: i for i, s in enumerate(sentences)}
    a, b = z[[index[s] for s in dev.sent1]], z[[index[s] for s in dev.sent2]]
    positive = torch.tensor(dev.scores) > 4
    return {"stsb_dev": 100 * spearmanr((a * b).sum(-1).numpy(), dev.scores)[0],
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
    parser.add_argument("--json", metavar="PATH", type=OUTPUT_FILE,
                        help="also write every number to this JSON file")
    parser.add_argument("--batch-size", type=SIZE, default=128,
                        help="sentences per forward pass (default: 128)")
    parser.add_argument("--subsets", action="store_true", help="also print each STS12-16 subset")
    args = parser.parse_args(argv)

    model_name = args.model or default_model()
    with command_errors():
        tasks_of(args.mode, args.tasks)  # before the model is loaded
        model, tokenizer, pooler = load_for_evaluation(model_name, args.pooler, device())
        start = time.perf_counter()
        results = evaluate(model, tokenizer, pooler, args.mode, args.tasks, args.data_dir, args.batch_size,
                           progress=True, precision=args.precision)
        seconds = time.perf_counter() - start
        print(f"------ {args.mode} | {model_name} | pooler {pooler} | {seconds:.1f}s ------")
        print(format_table(results["scores"]))
        if args.subsets:
            for task, subsets in results["details"].items():
                print(task + ": " + ", ".join(f"{k} {v['spearman']:.2f}" for k, v in subsets.items()))
        if args.json:  # whole, or not at all (files.py)
            write_file(args.json, json_text({"model": model_name, "seconds": seconds, **results}, indent=2))


if __name__ == "__main__":
    main()
