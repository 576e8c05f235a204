"""Transfer tasks as the SimCSE paper evaluates them (Appendix E, Table E.1): SentEval's seven sentence
classification tasks -- MR, CR, SUBJ, MPQA, SST-2, TREC, MRPC -- each a logistic regression trained on frozen
sentence embeddings; the score is its test accuracy (MRPC also F1), "Avg." the mean of the seven.

The protocol is that of the authors' `evaluation.py --task_set transfer --mode test`, i.e. SentEval's
(senteval/tools/validation.py and classifier.py; each task's file in senteval/):
  MR, CR, SUBJ, MPQA  10-fold cross-validation; in each fold the L2 strength (1e-5, 1e-4, 1e-3 or 1e-2) is
                      chosen by a 10-fold cross-validation of the fold's training part (InnerKFoldClassifier)
  SST2                trained on train, the L2 strength chosen on dev, tested on test (SplitClassifier)
  TREC, MRPC          a 10-fold cross-validation of train chooses the L2 strength, then test
                      (KFoldClassifier); MRPC's features of a pair of embeddings (u, v): [|u - v|, u * v]
Every regression is SentEval's: Adam (lr 1e-3), minibatches of 64, the L2 strength as Adam's weight decay,
a look at the validation accuracy every 4 passes keeping the best weights, a stop at the 6th look without
a gain; the same seed (1111), so the same folds, initial weights and shuffles. What is new is the speed:
each distinct sentence is encoded once, and the thousands of regressions train together, as batched
tensors, one Adam step for all of them.

    python eval_transfer.py --pooler avg
    python eval_transfer.py --model runs/quick/best --pooler cls_before_pooler --tasks MR TREC --json out.json
"""
from formats.command_line import OUTPUT_FILE, SIZE, Distinct, Parser, command_errors, quiet_start, seed
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

import data
from formats.checkpoint import check_model, default_model
from formats.files import write_file
from infra.cli import add_common_flags, device, json_text
from eval_sts import format_table
from tool import encode, load_for_evaluation
from formats.senteval import BINARY_FILES, TRANSFER_TASKS, Labelled

TASKS = TRANSFER_TASKS
NCLASSES = {"TREC": 6}  # the others have 2
SEED = 1111  # SentEval's (engine.py): the folds, the initial weights and the shuffles
KFOLD = 10  # the authors' evaluation.py, --mode test
REGS = (1e-5, 1e-4, 1e-3, 1e-2)  # validation.py with usepytorch: [10**t for t in range(-5, -1)]
VALIDATION_SPLIT = 0.05  # validation.py: a final fit early-stops on a random 5% of its training data


@dataclass(frozen=True)
class Classifier:
    """SentEval's logistic regression (classifier.py: MLP with nhid 0) as evaluation.py --mode test sets it
    (optim adam, batch_size 64, tenacity 5, epoch_size 4); the rest are classifier.py's defaults."""
    batch_size: int = 64
    epoch_size: int = 4  # passes over the training data between two looks at the validation accuracy
    max_epoch: int = 200  # in passes: the looks go on while no more than this many passes are done
    tenacity: int = 5  # stop at the 6th look without a gain (counted over the whole fit, not in a row)
    lr: float = 1e-3  # torch.optim.Adam's defaults: SentEval's utils.get_optimizer("adam") sets none
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8


CLASSIFIER = Classifier()


# --- Folds and splits: SentEval's draws ---------------------------------------------------------

def stratified_folds(labels, k=KFOLD, seed=SEED):
    """[(train rows, test rows)] of k folds with the classes spread evenly, drawn as SentEval's
    StratifiedKFold(k, shuffle=True, random_state=seed) draws them (scikit-learn >= 0.22): each class's
    share of every fold dealt round robin, then each class's fold numbers shuffled, the classes in the
    order they first appear."""
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    classes = {c: i for i, c in enumerate(dict.fromkeys(labels.tolist()))}
    code = np.array([classes[c] for c in labels.tolist()], dtype=np.int64)
    dealt = np.sort(code)
    per_fold = np.array([np.bincount(dealt[i::k], minlength=len(classes)) for i in range(k)])  # (k, classes)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in range(len(classes)):
        folds_of_class = np.repeat(np.arange(k), per_fold[:, c])
        rng.shuffle(folds_of_class)
        fold[code == c] = folds_of_class
    rows = np.arange(len(labels))
    return [(rows[fold != i], rows[fold == i]) for i in range(k)]


def validation_split(n, seed=SEED, fraction=VALIDATION_SPLIT):
    """(train part, validation part, the generator that then shuffles the passes) of a fit with a
    validation_split (classifier.py prepare_split): the classifier has seeded numpy; a permutation puts
    its first 5% aside for validation, and the same generator goes on to shuffle every pass."""
    rng = np.random.RandomState(seed)
    permutation = rng.permutation(n)
    cut = int(fraction * n)
    return permutation[cut:], permutation[:cut], rng


# --- Many logistic regressions at once ----------------------------------------------------------

def initial_weights(dim, nclasses, seed=SEED):
    """(nclasses, dim + 1): the weights of nn.Linear(dim, nclasses), bias as the last column, as every
    SentEval classifier draws them: after torch.manual_seed(seed), so the same for all."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(dim, nclasses)
    return torch.cat([layer.weight, layer.bias[:, None]], 1).detach()


def train_logistic(X, y, nclasses, train_rows, dev_rows, regs, streams=None, seed=SEED, cfg=CLASSIFIER,
                   workers=None):
    """S x R of SentEval's logistic regressions (classifier.py PyTorchClassifier.fit), trained together.

    X (n, d) features and y (n,) labels, on the device to train on; train_rows[s], dev_rows[s]: the rows of
    training set s and of the validation set that early-stops its regressions; regs (S, R): the L2
    strengths of set s's R regressions, which share its minibatches; streams[s]: the numpy generator that
    shuffles set s's passes (default: a new RandomState(seed), as each SentEval classifier seeds numpy).
    Returns (the weights each regression kept, (S, R, nclasses, d + 1), bias last; their validation
    accuracies (S, R), numpy).

    On a CPU the sets are dealt to `workers` threads (default: one per torch thread), each running its
    torch operations on one core: the operations are small, and the cores of one operation wait for each
    other at its end (long, on a CPU shared with other work); independent workers don't. Inside its
    operations torch lets go of Python's GIL."""
    regs = np.asarray(regs, dtype=np.float64)
    streams = streams or [np.random.RandomState(seed) for _ in train_rows]
    S, R = regs.shape
    cpu = X.device.type == "cpu"
    workers = min(workers or (torch.get_num_threads() if cpu else 1), S)
    chunks = [np.arange(k, S, workers) for k in range(workers)]  # dealt round robin: about as much work each
    start = initial_weights(X.shape[1], nclasses, seed).to(X.device)  # here: torch's global RNG, one thread

    def run(sets):
        if cpu:
            torch.set_num_threads(1)  # for this thread's operations
        return train_together(X, y, nclasses, [train_rows[s] for s in sets], [dev_rows[s] for s in sets],
                              regs[sets], [streams[s] for s in sets], start, cfg)
    threads = torch.get_num_threads()
    try:
        if workers == 1:
            results = [run(chunks[0])]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(run, chunks))
    finally:
        torch.set_num_threads(threads)
    weights, accuracy = torch.empty(S, R, nclasses, X.shape[1] + 1), np.empty((S, R))
    for sets, (w, acc) in zip(chunks, results):
        weights[sets], accuracy[sets] = w, acc
    return weights, accuracy


def pad_rows(rows_list, width):
    """(S, width) row indices, padded with row 0, and a mask of the real ones."""
    out = np.zeros((len(rows_list), width), dtype=np.int64)
    mask = np.zeros((len(rows_list), width), dtype=bool)
    for s, rows in enumerate(rows_list):
        out[s, :len(rows)], mask[s, :len(rows)] = rows, True
    return torch.from_numpy(out), torch.from_numpy(mask)


def train_together(X, y, nclasses, train_rows, dev_rows, regs, streams, start, cfg):
    """train_logistic's work for one batch of S sets. Their regressions are one weight tensor
    (S, C x R, d + 1): a row per class and regression, class-major (the softmax then runs over a leading
    dimension: fast; over a last dimension of 2 it is not), the bias in the last column. Each pass, every
    set's rows are shuffled by its own generator; step j takes minibatch j of every set, gathered once for
    the set's R regressions. A set with fewer minibatches than the longest sits out the pass's last steps;
    every set counts its own Adam steps."""
    device, C, B = X.device, nclasses, cfg.batch_size
    S, R = regs.shape
    n, d = X.shape
    Xa = torch.cat([X.float(), torch.ones(n, 1, device=device)], 1)  # a column of ones for the bias
    W = start[:, None].expand(C, R, d + 1).reshape(1, C * R, d + 1).repeat(S, 1, 1)
    m, v = torch.zeros_like(W), torch.zeros_like(W)  # Adam's moments
    decay = torch.tensor(regs, dtype=torch.float32, device=device).repeat(1, C)[:, :, None]  # row c * R + r
    sizes = np.array([len(rows) for rows in train_rows])
    steps = -(-sizes // B)  # minibatches a pass: the last may be smaller
    t = np.zeros(S, dtype=np.int64)  # Adam's step count, per set

    dev_idx, dev_mask = (x.to(device) for x in pad_rows(dev_rows, max(len(rows) for rows in dev_rows)))
    dev_X, dev_y = Xa[dev_idx], y[dev_idx]
    dev_n = torch.tensor([len(rows) for rows in dev_rows], dtype=torch.float64, device=device)
    best_acc = torch.full((S, R), -1.0, dtype=torch.float64, device=device)
    best_W = W.clone()
    misses = torch.zeros(S, R, dtype=torch.long, device=device)  # looks without a gain so far
    stopped = torch.zeros(S, R, dtype=torch.bool, device=device)
    active = np.arange(S)  # the sets still training: a set leaves when all its regressions have stopped
    rows = lambda i: Xa.index_select(0, i.reshape(-1))  # features of minibatches i (A, B), set after set
    passes = 0
    while passes <= cfg.max_epoch and len(active):  # classifier.py fit(): while nepoch <= max_epoch
        for _ in range(cfg.epoch_size):
            # The pass's minibatches, idx (steps, A, B), padded to the longest pass. A row's weight is
            # 1 / (its minibatch's size), as the loss is the minibatch's mean; padding's is 0.
            order = [train_rows[s][streams[s].permutation(sizes[s])] for s in active]
            idx, real = pad_rows(order, steps[active].max() * B)
            idx, real = (x.view(len(active), -1, B).transpose(0, 1).contiguous().to(device)
                         for x in (idx, real))
            scale = (real / real.sum(-1, keepdim=True).clamp_min(1))[:, :, None, None]  # (steps, A, 1, 1, B)
            target = torch.nn.functional.one_hot(y[idx], C).transpose(2, 3)[:, :, :, None] * scale
            # Which sets take each step, and each set's Adam step size and bias correction at each step.
            live = steps[active][None, :] > np.arange(len(idx))[:, None]  # (steps, A)
            t_now = t[active] + np.cumsum(live, 0)
            per_step = lambda x: torch.from_numpy(x).float().to(device)[..., None, None]  # (steps, A, 1, 1)
            step_size = per_step(cfg.lr / (1 - cfg.betas[0] ** t_now))
            root = per_step(np.sqrt(1 - cfg.betas[1] ** t_now))
            for j in range(len(idx)):
                if live[j].all():
                    step(W, m, v, rows(idx[j]), scale[j], target[j], decay, step_size[j], root[j], cfg)
                else:  # on copies of the live sets' tensors, written back
                    k = torch.from_numpy(np.flatnonzero(live[j])).to(device)
                    Wk, mk, vk = W[k], m[k], v[k]
                    step(Wk, mk, vk, rows(idx[j, k]), scale[j, k], target[j, k], decay[k], step_size[j, k],
                         root[j, k], cfg)
                    W[k], m[k], v[k] = Wk, mk, vk
            t[active] = t_now[-1]
        passes += cfg.epoch_size

        # A look at the validation accuracies: keep strictly better weights; count the looks without.
        a = torch.from_numpy(active).to(device)
        logits = torch.bmm(W, dev_X.transpose(1, 2)).view(len(active), C, R, -1)
        correct = (logits.argmax(1) == dev_y[:, None]) & dev_mask[:, None]  # (A, R, validation rows)
        acc = correct.sum(-1) / dev_n[:, None]
        live = ~stopped[a]
        better = (acc > best_acc[a]) & live
        best_acc[a] = torch.where(better, acc, best_acc[a])
        best_W[a] = torch.where(better.repeat(1, C)[:, :, None], W, best_W[a])
        worse = live & ~better
        stopped[a] |= worse & (misses[a] >= cfg.tenacity)
        misses[a] += worse.long()

        keep = ~stopped[a].all(1)
        if not keep.all():  # the sets whose regressions have all stopped leave the batch
            active, k = active[keep.cpu().numpy()], keep.nonzero().squeeze(1)
            W, m, v, decay = W[k], m[k], v[k], decay[k]
            dev_X, dev_y, dev_mask, dev_n = dev_X[k], dev_y[k], dev_mask[k], dev_n[k]
    return best_W.view(S, C, R, d + 1).transpose(1, 2).cpu(), best_acc.cpu().numpy()


def step(W, m, v, x, scale, target, decay, step_size, root, cfg):
    """One minibatch step of A sets' regressions: weights W (A, C x R, d + 1), Adam's moments m and v;
    x (A x B, d + 1) the sets' minibatches one after the other; scale (A, 1, 1, B) the rows' weights in the
    mean loss, target (A, C, 1, B) their one-hot labels times it; decay (A, C x R, 1) the L2 strengths;
    Adam's step size and bias correction (A, 1, 1) of each set."""
    A, CR, _ = W.shape
    C, B = target.shape[1], target.shape[-1]
    x = x.view(A, B, -1)
    logits = torch.bmm(W, x.transpose(1, 2))  # (A, C * R, B)
    p = logits.view(A, C, -1).softmax(1).view(A, C, -1, B)
    g = p.mul_(scale).sub_(target)  # d(mean cross-entropy)/d(logits) = (softmax - one-hot) / minibatch size
    grad = torch.bmm(g.view(A, CR, B), x)  # (A, C * R, d + 1)
    grad.addcmul_(decay, W)  # L2: Adam's weight_decay adds l2reg x weight to the gradient
    # Adam: torch.optim.Adam's arithmetic, op for op (its single-tensor version)
    m.lerp_(grad, 1 - cfg.betas[0])
    v.mul_(cfg.betas[1]).addcmul_(grad, grad, value=1 - cfg.betas[1])
    denom = (v.sqrt() / root).add_(cfg.eps)
    W.sub_(m * step_size / denom)


def predict(weights, X):
    """Class predictions of one regression's weights (C, d + 1) for features X (n, d)."""
    weights = weights.to(X.device)
    return (X.float() @ weights[:, :-1].T + weights[:, -1]).argmax(-1)


def percent(correct):
    return round(100 * float(correct.float().mean()), 2)


# --- SentEval's three protocols (senteval/tools/validation.py) ----------------------------------

def cross_validation(labels, train, k, seed):
    """The fits of a k-fold cross-validation of the rows `train` -- a fit per fold, early-stopped on its
    test fold -- and the final fit on all of them, early-stopped on a random 5%: [(training rows,
    validation rows, the generator that shuffles its passes)]."""
    folds = [(train[a], train[b], np.random.RandomState(seed))
             for a, b in stratified_folds(labels[train], k, seed)]
    a, b, rng = validation_split(len(train), seed)
    return folds + [(train[a], train[b], rng)]


def train_fits(X, y, nclasses, fits, seed):
    """train_logistic for [(training rows, validation rows, generator)], each with every L2 strength."""
    return train_logistic(X, y, nclasses, [f[0] for f in fits], [f[1] for f in fits],
                          np.tile(REGS, (len(fits), 1)), streams=[f[2] for f in fits], seed=seed)


def choose(accuracy):
    """SentEval's choice of L2 strength from the validation accuracies (folds, strengths): the best mean
    x100 as printed, to two decimals; np.argmax, so of equal ones the first (the weakest L2)."""
    scores = np.round(100 * accuracy.mean(0), 2)
    return int(scores.argmax()), float(scores.max())


def inner_kfold_classifier(X, y, nclasses, k=KFOLD, seed=SEED):
    """MR, CR, SUBJ, MPQA (InnerKFoldClassifier): k-fold cross-validation. In each fold, the L2 strengths
    are scored by a k-fold cross-validation of the fold's training part; the best is trained on the
    training part, early-stopped on a random 5% of it, and tested on the fold. The final fits are
    trained for every strength, alongside the k x k inner ones, before these have chosen: one batch of
    regressions, not two one after the other; the same regressions."""
    labels = y.cpu().numpy()
    outer = stratified_folds(labels, k, seed)
    weights, accuracy = train_fits(X, y, nclasses, [f for train, _ in outer
                                                    for f in cross_validation(labels, train, k, seed)], seed)
    weights, accuracy = weights.view(k, k + 1, *weights.shape[1:]), accuracy.reshape(k, k + 1, -1)
    fold_acc, chosen, dev = [], [], []
    for i, (_, test) in enumerate(outer):
        best, score = choose(accuracy[i, :k])
        fold_acc.append(percent(predict(weights[i, k, best], X[test]) == y[test]))
        chosen.append(REGS[best])
        dev.append(score)
    return {"acc": round(float(np.mean(fold_acc)), 2), "devacc": round(float(np.mean(dev)), 2),
            "fold_acc": fold_acc, "l2reg": chosen, "n": len(labels)}


def kfold_classifier(X, y, train, test, nclasses, k=KFOLD, seed=SEED):
    """TREC, MRPC (KFoldClassifier): a k-fold cross-validation of the training rows scores the L2
    strengths; the best is trained on all of them, early-stopped on a random 5%, and tested. (Here the
    final fit is trained for every strength, alongside the cross-validation.)
    Returns (SentEval's numbers, the test predictions)."""
    fits = cross_validation(y.cpu().numpy(), train, k, seed)
    weights, accuracy = train_fits(X, y, nclasses, fits, seed)
    best, score = choose(accuracy[:k])
    predicted = predict(weights[k, best], X[test])
    return {"acc": percent(predicted == y[test]), "devacc": score, "l2reg": REGS[best],
            "ndev": len(train), "ntest": len(test)}, predicted


def split_classifier(X, y, train, dev, test, nclasses, seed=SEED):
    """SST2 (SplitClassifier): a regression per L2 strength on train, early-stopped on dev; the one with
    the best dev accuracy (as printed) is tested. (SentEval trains it again first: with the same seed,
    the same regression.)"""
    weights, accuracy = train_logistic(X, y, nclasses, [train], [dev], [REGS], seed=seed)
    best, score = choose(accuracy)
    return {"acc": percent(predict(weights[0, best], X[test]) == y[test]), "devacc": score,
            "l2reg": REGS[best], "ndev": len(dev), "ntest": len(test)}


def f1(predicted, gold):
    """F1 x100 of class 1 (a paraphrase), as sklearn's f1_score in senteval/mrpc.py."""
    tp = int(((predicted == 1) & (gold == 1)).sum())
    return round(100 * 2 * tp / (int((predicted == 1).sum()) + int((gold == 1).sum())), 2)


# --- The tasks ----------------------------------------------------------------------------------

def senteval_order(part: Labelled):
    """The order SentEval puts a split in first: by word count, then label (MRPC: the first sentence's
    word count, the second's, the label), a stable sort (run() in binary.py, sst.py, trec.py, mrpc.py).
    The folds and the shuffles index this order, so it is part of the draws."""
    words = lambda sentences, i: len(sentences[i].split())
    if part.sent2 is None:
        key = lambda i: (words(part.sent1, i), part.labels[i])
    else:
        key = lambda i: (words(part.sent1, i), words(part.sent2, i), part.labels[i])
    return sorted(range(len(part.labels)), key=key)


def load_tasks(tasks, data_dir=None):
    """{task: {split: Labelled in SentEval's order}}. An unknown task or a missing file fails here,
    before anything is encoded."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown transfer task(s) {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(TASKS)}")
    loaded = {}
    for task in tasks:
        loaded[task] = {}
        for name, part in data.load_transfer(task, data_dir).items():
            order = senteval_order(part)
            pick = lambda values: None if values is None else [values[i] for i in order]
            loaded[task][name] = Labelled(pick(part.sent1), pick(part.labels), pick(part.sent2),
                                               part.source)
    return loaded


def features(embeddings, index, part: Labelled):
    """A split's classifier inputs: the sentence embeddings, or for pairs (MRPC) [|u - v|, u * v]."""
    u = embeddings[[index[s] for s in part.sent1]]
    if part.sent2 is None:
        return u
    v = embeddings[[index[s] for s in part.sent2]]
    return torch.cat([(u - v).abs(), u * v], 1)


def embed(model, tokenizer, pooler, loaded, batch_size=128, progress=False):
    """{task: {split: (features, labels)}} for load_tasks' output, every distinct sentence of all the
    tasks encoded once."""
    sentences = list(dict.fromkeys(s for parts in loaded.values() for p in parts.values()
                                   for s in p.sent1 + (p.sent2 or [])))
    index = {s: i for i, s in enumerate(sentences)}
    embeddings = encode(model, tokenizer, sentences, pooler, batch_size, progress=progress)
    return {task: {name: (features(embeddings, index, p), p.labels) for name, p in parts.items()}
            for task, parts in loaded.items()}


def classify(task, splits, device="cpu", seed=SEED, k=KFOLD):
    """SentEval's numbers for one task (acc, devacc, ...; MRPC also f1) from its splits' features and
    labels, {split: (X (n, d), labels)}; k folds where it cross-validates."""
    names = list(splits)
    X = torch.cat([torch.as_tensor(splits[s][0]) for s in names]).to(device)
    y = torch.cat([torch.as_tensor(splits[s][1]) for s in names]).to(device)
    ends = np.cumsum([0] + [len(splits[s][1]) for s in names])
    rows = {s: np.arange(ends[i], ends[i + 1]) for i, s in enumerate(names)}  # the splits' rows in X
    nclasses = NCLASSES.get(task, 2)
    if task in BINARY_FILES:
        return inner_kfold_classifier(X, y, nclasses, k, seed)
    if task == "SST2":
        return split_classifier(X, y, rows["train"], rows["dev"], rows["test"], nclasses, seed)
    result, predicted = kfold_classifier(X, y, rows["train"], rows["test"], nclasses, k, seed)
    if task == "MRPC":
        result["f1"] = f1(predicted.cpu(), y[rows["test"]].cpu())
    return result


def evaluate(model, tokenizer, pooler="cls", tasks=None, data_dir=None, batch_size=128, progress=False,
             seed=SEED):
    """{"scores": {task: test accuracy, ..., "Avg": ...}, "details": {task: SentEval's numbers}}. The
    regressions train on the model's device."""
    tasks = list(tasks or TASKS)
    inputs = embed(model, tokenizer, pooler, load_tasks(tasks, data_dir), batch_size, progress)
    device = next(model.parameters()).device
    details = {}
    for task in tasks:
        start = time.perf_counter()
        details[task] = classify(task, inputs[task], device, seed)
        details[task]["seconds"] = round(time.perf_counter() - start, 2)
        if progress:
            print(f"{task}: {details[task]['acc']:.2f} ({details[task]['seconds']:.1f}s)", flush=True)
    scores = {task: details[task]["acc"] for task in tasks}
    # As the authors' evaluation.py: the mean of the accuracies as printed (two decimals).
    scores["Avg"] = sum(round(scores[t], 2) for t in tasks) / len(tasks)
    return {"pooler": pooler, "scores": scores, "details": details}


def main(argv=None):
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, precision=False)  # every flag checked as it is read (formats/command_line.py)
    parser.add_argument("--tasks", nargs="+", metavar="TASK", choices=TASKS, action=Distinct,
                        help=f"some of the tasks: {' '.join(TASKS)} (default: all seven)")
    parser.add_argument("--json", metavar="PATH", type=OUTPUT_FILE,
                        help="also write every number to this JSON file")
    parser.add_argument("--batch-size", type=SIZE, default=128,
                        help="sentences per forward pass (default: 128)")
    parser.add_argument("--seed", type=seed(2**32), default=SEED,  # numpy's RandomState: [0, 2**32)
                        help=f"the folds', initial weights' and shuffles' seed (default: SentEval's, {SEED})")
    args = parser.parse_args(argv)

    model_name = args.model or default_model()
    start = time.perf_counter()
    with command_errors():
        check_model(model_name)  # "not found" at once, then a missing or damaged file: before the model
        load_tasks(args.tasks or TASKS, args.data_dir)
        model, tokenizer, pooler = load_for_evaluation(model_name, args.pooler, device())
        results = evaluate(model, tokenizer, pooler, args.tasks, args.data_dir, args.batch_size,
                           progress=True, seed=args.seed)
        seconds = time.perf_counter() - start
        print(f"------ transfer | {model_name} | pooler {pooler} | {seconds:.1f}s ------")
        print(format_table(results["scores"]))
        if "MRPC" in results["details"]:
            mrpc = results["details"]["MRPC"]
            print(f"MRPC: accuracy {mrpc['acc']:.2f}, F1 {mrpc['f1']:.2f}")
        if args.json:  # whole, or not at all (files.py)
            write_file(args.json, json_text({"model": model_name, "seconds": seconds, **results}, indent=2))


if __name__ == "__main__":
    main()
