"""Transfer tasks as in the SimCSE paper (its appendix on transfer tasks): SentEval's seven sentence
classification tasks -- MR, CR, SUBJ, MPQA, SST-2, TREC, MRPC -- each a logistic regression trained on
frozen sentence embeddings; the score is its test accuracy (MRPC also F1), "Avg." the mean of the seven.

The protocol is that of the authors' `evaluation.py --task_set transfer --mode test`, i.e. SentEval's
(senteval/tools/validation.py and classifier.py, each task's file in senteval/):
  MR, CR, SUBJ, MPQA  10-fold cross-validation; in each fold the L2 strength (1e-5, 1e-4, 1e-3, 1e-2) is
                      chosen by an inner 10-fold cross-validation of its training part (InnerKFoldClassifier)
  SST2                train, dev (chooses the L2 strength), test (SplitClassifier)
  TREC, MRPC          10-fold cross-validation on train chooses the L2 strength, then test (KFoldClassifier);
                      MRPC's features for a pair (u, v) are [|u - v|, u * v], as SentEval builds them
Every regression is SentEval's: Adam (lr 1e-3), minibatches of 64, L2 as Adam's weight decay, the dev
accuracy looked at every 4 passes and the best weights kept, stopping after 5 looks without improvement;
the same seeds (1111), folds and shuffles. What is new is the speed: each distinct sentence is encoded
once, and the thousands of regressions train together, as batched tensors, one Adam step for all of them.

    python eval_transfer.py --pooler avg
    python eval_transfer.py --model runs/quick/best --pooler cls_before_pooler --tasks MR TREC --json transfer.json
"""
import argparse
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

import data
from bert import BertModel, load_tokenizer
from eval_sts import default_model, format_table
from simcse import POOLERS, encode

TASKS = data.TRANSFER_TASKS
SEED = 1111  # SentEval's seed (engine.py), for the folds, the initial weights and the shuffles
KFOLD = 10  # the authors' evaluation.py, --mode test
REGS = (1e-5, 1e-4, 1e-3, 1e-2)  # validation.py with usepytorch: [10**t for t in range(-5, -1)]
VALIDATION_SPLIT = 0.05  # validation.py: a final fit early-stops on a random 5% of its training data


@dataclass(frozen=True)
class Classifier:
    """SentEval's logistic regression (classifier.py, MLP with nhid 0) as evaluation.py --mode test sets
    it (optim adam, batch_size 64, tenacity 5, epoch_size 4), the rest classifier.py's defaults."""
    batch_size: int = 64
    epoch_size: int = 4  # passes over the training data between two looks at the validation accuracy
    max_epoch: int = 200  # passes; looks continue while no more than this many passes are done
    tenacity: int = 5  # stop at the 6th look without improvement (counted over the run, not in a row)
    lr: float = 1e-3  # torch.optim.Adam's defaults: SentEval's utils.get_optimizer("adam") sets none
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8


CLASSIFIER = Classifier()


# --- Folds and splits (SentEval's draws) ----------------------------------------------------------

def stratified_folds(labels, k=KFOLD, seed=SEED):
    """[(train rows, test rows)] of k folds with the classes spread evenly, as SentEval's
    StratifiedKFold(k, shuffle=True, random_state=seed) draws them (scikit-learn >= 0.22): the number of
    each class per fold dealt round-robin, then each class's fold numbers shuffled, class by class in the
    order the classes first appear."""
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    classes = {c: i for i, c in enumerate(dict.fromkeys(labels.tolist()))}
    code = np.array([classes[c] for c in labels.tolist()], dtype=np.int64)
    dealt = np.sort(code)
    per_fold = np.array([np.bincount(dealt[i::k], minlength=len(classes)) for i in range(k)])  # (k, classes)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in range(len(classes)):
        fold_of_class = np.repeat(np.arange(k), per_fold[:, c])
        rng.shuffle(fold_of_class)
        fold[code == c] = fold_of_class
    rows = np.arange(len(labels))
    return [(rows[fold != i], rows[fold == i]) for i in range(k)]


def validation_split(n, seed=SEED, fraction=VALIDATION_SPLIT):
    """(train part, validation part, the generator that then shuffles the passes) of a fit with
    validation_split (classifier.py prepare_split): the classifier seeds numpy, a permutation cuts off the
    first 5% for validation, and the same generator goes on to shuffle every pass."""
    rng = np.random.RandomState(seed)
    permutation = rng.permutation(n)
    cut = int(fraction * n)
    return permutation[cut:], permutation[:cut], rng


# --- Many logistic regressions at once ------------------------------------------------------------

def initial_weights(dim, nclasses, seed=SEED):
    """(dim + 1, nclasses): nn.Linear(dim, nclasses)'s initial weights, bias as the last row, drawn after
    torch.manual_seed(seed) as every SentEval classifier draws them (the same for all of them)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(dim, nclasses)
    return torch.cat([layer.weight.T, layer.bias[None]]).detach()


def train_logistic(X, y, nclasses, train_rows, dev_rows, regs, streams=None, seed=SEED, cfg=CLASSIFIER):
    """S x R of SentEval's logistic regressions (classifier.py PyTorchClassifier.fit), trained together.

    X (n, d) features and y (n,) labels, on the device to train on; train_rows[s] and dev_rows[s] the rows
    of training set s and of the validation set that early-stops it; regs (S, R): the L2 strengths of the
    R regressions of set s, which share its minibatches. streams[s]: the numpy generator that shuffles set
    s's passes (default: a new RandomState(seed), as each SentEval classifier seeds numpy when made).
    Returns (the weights each kept, (S, R, d + 1, nclasses) with the bias last; their best validation
    accuracies (S, R), numpy). Sets that need as many minibatches a pass are trained in one batch."""
    regs = np.asarray(regs, dtype=np.float64)
    streams = streams or [np.random.RandomState(seed) for _ in train_rows]
    S, R = regs.shape
    weights = torch.empty(S, R, X.shape[1] + 1, nclasses, device=X.device)
    accuracy = np.empty((S, R))
    groups = defaultdict(list)  # sets by minibatches per pass: SentEval's passes have ceil(n / batch) steps
    for s, rows in enumerate(train_rows):
        groups[math.ceil(len(rows) / cfg.batch_size)].append(s)
    for members in groups.values():
        w, acc = train_group(X, y, nclasses, [train_rows[s] for s in members], [dev_rows[s] for s in members],
                             regs[members], [streams[s] for s in members], seed, cfg)
        weights[members], accuracy[members] = w, acc
    return weights, accuracy


def pad_rows(rows_list, width):
    """(S, width) row indices, padded with row 0, and a mask of the real ones."""
    out = np.zeros((len(rows_list), width), dtype=np.int64)
    mask = np.zeros((len(rows_list), width), dtype=bool)
    for s, rows in enumerate(rows_list):
        out[s, :len(rows)], mask[s, :len(rows)] = rows, True
    return torch.from_numpy(out), torch.from_numpy(mask)


def train_group(X, y, nclasses, train_rows, dev_rows, regs, streams, seed, cfg):
    """train_logistic for sets whose passes have the same number of minibatches. The S sets' R
    regressions are one weight tensor (S, d + 1, R * nclasses): a minibatch of set s is gathered once and
    multiplied by the weights of all its R regressions; gradients, written out for the softmax
    cross-entropy, and Adam's step are computed for all of them at once."""
    device, C, B = X.device, nclasses, cfg.batch_size
    S, R = regs.shape
    n, d = X.shape
    Xa = torch.cat([X.float(), torch.ones(n, 1, device=device)], 1)  # a column of ones: the bias
    onehot = torch.nn.functional.one_hot(y, C).float()
    W = initial_weights(d, C, seed).to(device).repeat(S, 1, R)  # (S, d + 1, R * C)
    m, v = torch.zeros_like(W), torch.zeros_like(W)  # Adam's moments
    decay = torch.tensor(regs, dtype=torch.float32, device=device).repeat_interleave(C, 1)[:, None, :]
    steps = math.ceil(len(train_rows[0]) / B)
    sizes = np.array([len(rows) for rows in train_rows])

    dev_idx, dev_mask = pad_rows(dev_rows, max(len(rows) for rows in dev_rows))
    dev_X, dev_y, dev_mask = Xa[dev_idx.to(device)], y[dev_idx.to(device)], dev_mask.to(device)
    dev_n = torch.tensor([len(rows) for rows in dev_rows], device=device, dtype=torch.float64)

    best_acc = torch.full((S, R), -1.0, dtype=torch.float64, device=device)
    best_W = W.clone().view(S, d + 1, R, C)
    misses = torch.zeros(S, R, dtype=torch.long, device=device)  # looks without improvement so far
    stopped = torch.zeros(S, R, dtype=torch.bool, device=device)
    active = np.arange(S)  # sets still training: a set leaves once all its regressions have stopped
    t, passes = 0, 0
    while passes <= cfg.max_epoch and len(active):  # classifier.py fit(): while nepoch <= max_epoch
        for _ in range(cfg.epoch_size):
            # This pass's order of every active set's rows (each set's own generator, as in trainepoch),
            # padded to whole minibatches; a row's weight is 1 / (its minibatch's size), padding's 0.
            order = [train_rows[s][streams[s].permutation(sizes[s])] for s in active]
            idx, real = pad_rows(order, steps * B)
            idx, real = idx.to(device).view(-1, steps, B), real.to(device).view(-1, steps, B).float()
            scale = real / real.sum(-1, keepdim=True)  # the loss is the mean over the minibatch
            for j in range(steps):
                xb = Xa[idx[:, j]]  # (S, B, d + 1)
                logits = torch.bmm(xb, W).view(-1, B, R, C)
                # d(mean cross-entropy)/d(logits) = (softmax - one-hot) / batch size
                g = (logits.softmax(-1) - onehot[idx[:, j]][:, :, None]) * scale[:, j, :, None, None]
                grad = torch.bmm(xb.transpose(1, 2), g.view(-1, B, R * C)).addcmul_(decay, W)  # + L2
                t += 1  # Adam, as torch.optim.Adam computes it (weight_decay: L2 added to the gradient)
                m.lerp_(grad, 1 - cfg.betas[0])
                v.mul_(cfg.betas[1]).addcmul_(grad, grad, value=1 - cfg.betas[1])
                denom = (v.sqrt() / math.sqrt(1 - cfg.betas[1] ** t)).add_(cfg.eps)
                W.addcdiv_(m, denom, value=-cfg.lr / (1 - cfg.betas[0] ** t))
        passes += cfg.epoch_size

        # A look at the validation accuracy: keep strictly better weights; count the looks without.
        a = torch.from_numpy(active).to(device)
        predicted = torch.bmm(dev_X, W).view(len(active), -1, R, C).argmax(-1)
        acc = ((predicted == dev_y[..., None]) & dev_mask[..., None]).sum(1) / dev_n[:, None]
        live = ~stopped[a]
        better = (acc > best_acc[a]) & live
        best_acc[a] = torch.where(better, acc, best_acc[a])
        best_W[a] = torch.where(better[:, None, :, None], W.view(len(active), d + 1, R, C), best_W[a])
        worse = live & ~better
        stopped[a] |= worse & (misses[a] >= cfg.tenacity)
        misses[a] += worse.long()

        keep = ~stopped[a].all(1)
        if not keep.all():  # drop the sets whose regressions have all stopped from the batch
            active, k = active[keep.cpu().numpy()], keep.nonzero().squeeze(1)
            W, m, v, decay = W[k], m[k], v[k], decay[k]
            dev_X, dev_y, dev_mask, dev_n = dev_X[k], dev_y[k], dev_mask[k], dev_n[k]
    return best_W.permute(0, 2, 1, 3).cpu(), best_acc.cpu().numpy()


def predict(weights, X):
    """Class predictions of one regression's weights (d + 1, C) for features X (n, d)."""
    return (X.float() @ weights[:-1].to(X.device) + weights[-1].to(X.device)).argmax(-1)


def percent(correct):
    return round(100 * float(correct.float().mean()), 2)


# --- SentEval's three protocols -------------------------------------------------------------------

def inner_kfold(X, y, nclasses, k=KFOLD, seed=SEED):
    """MR, CR, SUBJ, MPQA (validation.py InnerKFoldClassifier): k-fold cross-validation. In each fold, every
    L2 strength is scored by a k-fold cross-validation of the fold's training part (each regression
    early-stopped on, and scored by, its inner test fold), the mean as printed to two decimals; the best
    strength is trained on the training part, early-stopped on a random 5% of it, and tested on the fold.
    All k x k x 4 inner regressions train together, then the k final ones."""
    labels = y.cpu().numpy()
    outer = stratified_folds(labels, k, seed)
    inner = [(train[a], train[b]) for train, _ in outer for a, b in stratified_folds(labels[train], k, seed)]
    _, inner_acc = train_logistic(X, y, nclasses, [a for a, _ in inner], [b for _, b in inner],
                                  np.tile(REGS, (len(inner), 1)), seed=seed)
    scores = np.round(100 * inner_acc.reshape(k, k, len(REGS)).mean(1), 2)  # (outer fold, L2 strength)
    chosen = scores.argmax(1)  # np.argmax: the first of equal scores, i.e. the weakest L2
    splits = [validation_split(len(train), seed) for train, _ in outer]
    weights, _ = train_logistic(X, y, nclasses, [train[a] for (train, _), (a, _, _) in zip(outer, splits)],
                                [train[b] for (train, _), (_, b, _) in zip(outer, splits)],
                                np.array(REGS)[chosen][:, None], streams=[rng for *_, rng in splits], seed=seed)
    fold_acc = [percent(predict(weights[i, 0], X[test]) == y[test]) for i, (_, test) in enumerate(outer)]
    return {"acc": round(float(np.mean(fold_acc)), 2), "devacc": round(float(np.mean(scores.max(1))), 2),
            "fold_acc": fold_acc, "l2reg": [REGS[c] for c in chosen], "n": len(labels)}


def kfold(X, y, train, test, nclasses, k=KFOLD, seed=SEED):
    """TREC, MRPC (validation.py KFoldClassifier): k-fold cross-validation on the training rows scores each
    L2 strength; the best is trained on all of them, early-stopped on a random 5%, and tested.
    Returns (results, test predictions)."""
    folds = stratified_folds(y[train].cpu().numpy(), k, seed)
    _, acc = train_logistic(X, y, nclasses, [train[a] for a, _ in folds], [train[b] for _, b in folds],
                            np.tile(REGS, (k, 1)), seed=seed)
    scores = np.round(100 * acc.mean(0), 2)
    best = int(scores.argmax())
    a, b, rng = validation_split(len(train), seed)
    weights, _ = train_logistic(X, y, nclasses, [train[a]], [train[b]], [[REGS[best]]], streams=[rng], seed=seed)
    predicted = predict(weights[0, 0], X[test])
    return {"acc": percent(predicted == y[test]), "devacc": float(scores.max()), "l2reg": REGS[best],
            "ndev": len(train), "ntest": len(test)}, predicted


def split(X, y, train, dev, test, nclasses, seed=SEED):
    """SST2 (validation.py SplitClassifier): one regression per L2 strength on train, early-stopped on dev;
    the one with the best dev accuracy (as printed) is tested. (SentEval trains the chosen one again: with
    the same seed it is the same regression.)"""
    weights, acc = train_logistic(X, y, nclasses, [train], [dev], [REGS], seed=seed)
    scores = np.round(100 * acc[0], 2)
    best = int(scores.argmax())
    return {"acc": percent(predict(weights[0, best], X[test]) == y[test]), "devacc": float(scores.max()),
            "l2reg": REGS[best], "ndev": len(dev), "ntest": len(test)}


def f1(predicted, gold):
    """F1 x100 of class 1 (a paraphrase), as sklearn's f1_score in senteval/mrpc.py."""
    tp = int(((predicted == 1) & (gold == 1)).sum())
    return round(100 * 2 * tp / (int((predicted == 1).sum()) + int((gold == 1).sum())), 2)


# --- The tasks ------------------------------------------------------------------------------------

def senteval_order(split_data: data.Labelled):
    """The order SentEval puts a split in before anything else, sorted by word count then label (MRPC: both
    sentences' word counts, then label), a stable sort (binary.py, sst.py, trec.py, mrpc.py run()). The
    folds and the shuffles index this order, so it is part of the draws."""
    if split_data.sent2 is None:
        key = lambda i: (len(split_data.sent1[i].split()), split_data.labels[i])
    else:
        key = lambda i: (len(split_data.sent1[i].split()), len(split_data.sent2[i].split()), split_data.labels[i])
    return sorted(range(len(split_data.labels)), key=key)


def load_tasks(tasks, data_dir=None):
    """{task: {split: Labelled in SentEval's order}}; an unknown task or a missing file fails here, before
    any encoding."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown transfer task(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(TASKS)}")
    loaded = {}
    for task in tasks:
        loaded[task] = {}
        for name, part in data.load_transfer(task, data_dir).items():
            order = senteval_order(part)
            loaded[task][name] = data.Labelled([part.sent1[i] for i in order], [part.labels[i] for i in order],
                                               None if part.sent2 is None else [part.sent2[i] for i in order],
                                               part.source)
    return loaded


def features(embeddings, index, part: data.Labelled):
    """A split's classifier inputs: the sentence embeddings, or for a pair (MRPC) [|u - v|, u * v]."""
    u = embeddings[[index[s] for s in part.sent1]]
    if part.sent2 is None:
        return u
    v = embeddings[[index[s] for s in part.sent2]]
    return torch.cat([(u - v).abs(), u * v], 1)


NCLASSES = {"TREC": 6}  # the others have 2


def classify(task, splits, device="cpu", seed=SEED):
    """The results of one task (SentEval's dict: acc, devacc, ... ; MRPC also f1) from its splits'
    features and labels: {split: (X (n, d), labels)}."""
    names = list(splits)
    X = torch.cat([splits[s][0] for s in names]).to(device)
    y = torch.cat([torch.as_tensor(splits[s][1]) for s in names]).to(device)
    ends = np.cumsum([0] + [len(splits[s][1]) for s in names])
    rows = {s: np.arange(ends[i], ends[i + 1]) for i, s in enumerate(names)}
    nclasses = NCLASSES.get(task, 2)
    if task in data.BINARY_FILES:
        return inner_kfold(X, y, nclasses, seed=seed)
    if task == "SST2":
        return split(X, y, rows["train"], rows["dev"], rows["test"], nclasses, seed)
    result, predicted = kfold(X, y, rows["train"], rows["test"], nclasses, seed=seed)
    if task == "MRPC":
        result["f1"] = f1(predicted.cpu(), y[rows["test"]].cpu())
    return result


def evaluate(model, tokenizer, pooler="cls", tasks=None, data_dir=None, batch_size=128, progress=False,
             seed=SEED):
    """{"scores": {task: test accuracy, ..., "Avg": ...}, "details": {task: SentEval's numbers}}."""
    tasks = list(tasks or TASKS)
    loaded = load_tasks(tasks, data_dir)
    # Encode every distinct sentence once, all tasks together.
    sentences = list(dict.fromkeys(s for parts in loaded.values() for p in parts.values()
                                   for s in p.sent1 + (p.sent2 or [])))
    index = {s: i for i, s in enumerate(sentences)}
    embeddings = encode(model, tokenizer, sentences, pooler, batch_size, progress=progress)
    device = next(model.parameters()).device
    details = {}
    for task in tasks:
        start = time.perf_counter()
        splits = {name: (features(embeddings, index, p), p.labels) for name, p in loaded[task].items()}
        details[task] = classify(task, splits, device, seed)
        details[task]["seconds"] = round(time.perf_counter() - start, 2)
        if progress:
            print(f"{task}: {details[task]['acc']:.2f} ({details[task]['seconds']:.1f}s)", flush=True)
    scores = {task: details[task]["acc"] for task in tasks}
    # As the authors' evaluation.py: the mean of the accuracies as printed (two decimals).
    scores["Avg"] = sum(round(scores[t], 2) for t in tasks) / len(tasks)
    return {"pooler": pooler, "scores": scores, "details": details}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="checkpoint folder or Hugging Face hub id (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--pooler", default="cls", choices=POOLERS,
                        help="how to read a sentence embedding off BERT (default: cls)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help=f"a subset of the tasks: {' '.join(TASKS)} (default: all seven)")
    parser.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    parser.add_argument("--data-dir", help=f"data folder (default: ${data.DATA_DIR_ENV}, ./data or ../shared/data)")
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per forward pass (default: 128)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"seed of the folds, initial weights and shuffles (default: SentEval's {SEED})")
    args = parser.parse_args()

    model_name = args.model or default_model()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    try:
        load_tasks(args.tasks or TASKS, args.data_dir)  # bad task names and missing files before loading the model
        model, tokenizer = BertModel.from_pretrained(model_name).to(device), load_tokenizer(model_name)
        results = evaluate(model, tokenizer, args.pooler, args.tasks, args.data_dir, args.batch_size,
                           progress=True, seed=args.seed)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"error: {e}")
    seconds = time.perf_counter() - start
    print(f"------ transfer | {model_name} | pooler {args.pooler} | {seconds:.1f}s ------")
    print(format_table(results["scores"]))
    if "MRPC" in results["details"]:
        mrpc = results["details"]["MRPC"]
        print(f"MRPC: accuracy {mrpc['acc']:.2f}, F1 {mrpc['f1']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model_name, "seconds": seconds, **results}, f, indent=2)


if __name__ == "__main__":
    main()
