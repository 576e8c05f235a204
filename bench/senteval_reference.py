"""The authors' evaluation, rebuilt as they run it, to check ours against (tests/) and to time it (bench/):
SentEval's STS loop around the authors' evaluation.py batcher, and SentEval's transfer-task classifiers (its
validation loops and PyTorch logistic regression), one regression at a time. Not used by training or by
eval_sts.py / eval_transfer.py, which give the same numbers faster."""
import copy

import numpy as np
import torch
from scipy.stats import spearmanr

import data
from formats.senteval import BINARY_FILES, STS_TASKS, STS_YEARS


def senteval_style(model, tokenizer, pooler, tasks=STS_TASKS, mode="test", data_dir=None,
                   batch_size=128):
    """The authors' evaluation rebuilt for comparison: SentEval's STS loop around evaluation.py's batcher.

    `model` is a transformers.BertModel and `tokenizer` its tokenizer. Task by task and subset by subset,
    batches of 128 pairs -- STS12-16 sorted by the word counts of the first, then the second sentence, then
    the score; STS-B and SICK-R in file order, all three splits -- each side padded and encoded on its own,
    then a cosine per pair in numpy. Returns the headline numbers, like `evaluate(...)["scores"]`.
    """
    def batcher(words):
        batch = tokenizer([" ".join(w) for w in words], padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True, return_dict=True)
        mask = batch["attention_mask"].unsqueeze(-1)
        hidden = out.hidden_states
        if pooler == "cls":
            return out.pooler_output
        if pooler == "cls_before_pooler":
            return out.last_hidden_state[:, 0]
        tokens = {"avg": hidden[-1], "avg_top2": (hidden[-1] + hidden[-2]) / 2.0,
                  "avg_first_last": (hidden[1] + hidden[-1]) / 2.0}[pooler]
        return (tokens * mask).sum(1) / mask.sum(-1).unsqueeze(-1)

    def cosine(u, v):
        u, v = np.nan_to_num(u.numpy()), np.nan_to_num(v.numpy())
        return np.nan_to_num(np.dot(u, v) / (np.sqrt(np.dot(u, u)) * np.sqrt(np.dot(v, v))))

    scores = {}
    for task in tasks:
        all_sys, all_gold, per_split = [], [], {}
        for subset, pairs in data.load_sts(task, data_dir).items():
            words = list(zip([s.split() for s in pairs.sent1], [s.split() for s in pairs.sent2],
                             pairs.scores))
            if task in STS_YEARS:
                words.sort(key=lambda z: (len(z[0]), len(z[1]), z[2]))
            sys_scores = []
            for i in range(0, len(words), batch_size):
                chunk = words[i:i + batch_size]
                enc1, enc2 = batcher([z[0] for z in chunk]), batcher([z[1] for z in chunk])
                sys_scores += [cosine(enc1[k], enc2[k]) for k in range(len(chunk))]
            gold = [z[2] for z in words]
            per_split[subset] = 100 * spearmanr(sys_scores, gold)[0]
            all_sys += sys_scores
            all_gold += gold
        if task in STS_YEARS:
            scores[task] = 100 * spearmanr(all_sys, all_gold)[0]
        else:
            scores[task] = per_split["dev" if mode == "dev" else "test"]
    if mode == "test" and len(tasks) == len(STS_TASKS):
        scores["Avg"] = sum(float(f"{scores[t]:.2f}") for t in tasks) / len(tasks)
    return scores


class SentEvalLogReg:
    """SentEval's PyTorch logistic regression (senteval/tools/classifier.py, PyTorchClassifier + MLP with
    nhid 0) as the authors' evaluation.py --mode test configures it, one regression at a time: seeds set
    when made, nn.Linear, CrossEntropyLoss (a mean), Adam with weight_decay = l2reg, minibatches of 64 from
    np.random.permutation, the validation accuracy every 4 passes, a deep copy of the best model."""

    def __init__(self, dim, nclasses, l2reg, seed=1111, tenacity=5, epoch_size=4, max_epoch=200):
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.batch_size, self.tenacity, self.epoch_size, self.max_epoch = 64, tenacity, epoch_size, max_epoch
        self.model = torch.nn.Sequential(torch.nn.Linear(dim, nclasses))
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters())  # utils.get_optimizer("adam"): defaults
        self.optimizer.param_groups[0]["weight_decay"] = l2reg

    def fit(self, X, y, validation_data=None, validation_split=None):
        if validation_data is not None:
            (trainX, trainy), (devX, devy) = (X, y), validation_data
        else:
            permutation = np.random.permutation(len(X))
            cut = int(validation_split * len(X))
            train, dev = permutation[cut:], permutation[:cut]
            trainX, trainy, devX, devy = X[train], y[train], X[dev], y[dev]
        trainX, trainy = torch.FloatTensor(trainX), torch.LongTensor(trainy)
        self.nepoch, best, misses, stop = 0, -1, 0, False
        while not stop and self.nepoch <= self.max_epoch:
            self.model.train()
            for _ in range(self.epoch_size):
                permutation = np.random.permutation(len(trainX))
                for i in range(0, len(trainX), self.batch_size):
                    idx = torch.LongTensor(permutation[i:i + self.batch_size])
                    loss = self.loss_fn(self.model(trainX.index_select(0, idx)), trainy.index_select(0, idx))
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
            self.nepoch += self.epoch_size
            accuracy = self.score(devX, devy)
            if accuracy > best:
                best, best_model = accuracy, copy.deepcopy(self.model)
            else:
                if misses >= self.tenacity:
                    stop = True
                misses += 1
        self.model = best_model
        return best

    @torch.no_grad()
    def predict(self, X):
        self.model.eval()
        X = torch.FloatTensor(X)
        batches = range(0, len(X), self.batch_size)
        return torch.cat([self.model(X[i:i + self.batch_size]).max(1)[1] for i in batches]).numpy()

    def score(self, X, y):
        return 1.0 * int((self.predict(X) == np.asarray(y)).sum()) / len(X)


def senteval_transfer_style(task, splits, outer_folds=None, seed=1111, kfold=10):
    """One transfer task classified as SentEval does it (senteval/tools/validation.py; binary.py, sst.py,
    trec.py, mrpc.py), on given features: splits = {split: (X, labels)} in SentEval's order, as
    eval_transfer.classify takes them. scikit-learn's StratifiedKFold, one SentEvalLogReg at a time.
    outer_folds: only the first N folds of MR, CR, SUBJ, MPQA's outer cross-validation (a reduced run);
    kfold: SentEval's params.kfold (the authors' evaluation.py: 10).
    Returns SentEval's numbers: acc, devacc (MRPC also f1; the CV tasks also fold_acc)."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold
    regs = [10 ** t for t in range(-5, -1)]
    arrays = {k: (np.asarray(X, dtype=np.float32), np.asarray(labels)) for k, (X, labels) in splits.items()}
    nclasses = 6 if task == "TREC" else 2
    make = lambda reg: SentEvalLogReg(arrays[next(iter(arrays))][0].shape[1], nclasses, reg, seed)

    if task in BINARY_FILES:  # InnerKFoldClassifier
        X, y = arrays["all"]
        skf = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=seed)
        innerskf = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=seed)
        devresults, testresults = [], []
        for count, (train_idx, test_idx) in enumerate(skf.split(X, y)):
            if outer_folds is not None and count == outer_folds:
                break
            X_train, X_test, y_train, y_test = X[train_idx], X[test_idx], y[train_idx], y[test_idx]
            scores = []
            for reg in regs:
                regscores = []
                for inner_train, inner_test in innerskf.split(X_train, y_train):
                    clf = make(reg)
                    clf.fit(X_train[inner_train], y_train[inner_train],
                            validation_data=(X_train[inner_test], y_train[inner_test]))
                    regscores.append(clf.score(X_train[inner_test], y_train[inner_test]))
                scores.append(round(100 * np.mean(regscores), 2))
            devresults.append(np.max(scores))
            clf = make(regs[int(np.argmax(scores))])
            clf.fit(X_train, y_train, validation_split=0.05)
            testresults.append(round(100 * clf.score(X_test, y_test), 2))
        return {"acc": round(float(np.mean(testresults)), 2), "devacc": round(float(np.mean(devresults)), 2),
                "fold_acc": testresults}

    if task == "SST2":  # SplitClassifier
        (Xtr, ytr), (Xdev, ydev), (Xte, yte) = arrays["train"], arrays["dev"], arrays["test"]
        scores = []
        for reg in regs:
            clf = make(reg)
            clf.fit(Xtr, ytr, validation_data=(Xdev, ydev))
            scores.append(round(100 * clf.score(Xdev, ydev), 2))
        clf = make(regs[int(np.argmax(scores))])
        clf.fit(Xtr, ytr, validation_data=(Xdev, ydev))
        return {"acc": round(100 * clf.score(Xte, yte), 2), "devacc": float(np.max(scores))}

    (Xtr, ytr), (Xte, yte) = arrays["train"], arrays["test"]  # TREC, MRPC: KFoldClassifier
    skf = StratifiedKFold(n_splits=kfold, shuffle=True, random_state=seed)
    scores = []
    for reg in regs:
        scanscores = []
        for train_idx, test_idx in skf.split(Xtr, ytr):
            clf = make(reg)
            clf.fit(Xtr[train_idx], ytr[train_idx], validation_data=(Xtr[test_idx], ytr[test_idx]))
            scanscores.append(clf.score(Xtr[test_idx], ytr[test_idx]))
        scores.append(round(100 * np.mean(scanscores), 2))
    clf = make(regs[int(np.argmax(scores))])
    clf.fit(Xtr, ytr, validation_split=0.05)
    yhat = clf.predict(Xte)
    result = {"acc": round(100 * clf.score(Xte, yte), 2), "devacc": float(np.max(scores))}
    if task == "MRPC":
        result["f1"] = round(100 * f1_score(yte, yhat), 2)
    return result
