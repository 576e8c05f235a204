"""Benchmarks against the reference stack (transformers + the authors' SentEval loop). Prints times and ratios.

    python bench.py eval     # full seven-task STS test evaluation: ours vs. the SentEval way
    python bench.py train    # SimCSE training steps: our BERT vs. transformers.BertModel
    python bench.py train --train-file nli/nli_small_for_simcse.csv   # supervised (triplets)
    python bench.py train --bert-base       # the paper's model shape (random weights), e.g. on a GPU
    python bench.py run --bert-base         # a timed unsup-bert-shaped run and the whole run's projected time
    python bench.py search   # SimCSE.search: 100 queries against 200,000 stored embeddings
    python bench.py transfer # the seven transfer tasks: ours vs. the SentEval way (a reduced run of it)
"""
import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import data
from bert import BertConfig, BertModel, load_tokenizer
from eval_sts import default_model, evaluate, format_table


def senteval_style(model, tokenizer, pooler, tasks=data.STS_TASKS, mode="test", data_dir=None, batch_size=128):
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
            words = list(zip([s.split() for s in pairs.sent1], [s.split() for s in pairs.sent2], pairs.scores))
            if task in data.STS_YEARS:
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
        if task in data.STS_YEARS:
            scores[task] = 100 * spearmanr(all_sys, all_gold)[0]
        else:
            scores[task] = per_split["dev" if mode == "dev" else "test"]
    if mode == "test" and len(tasks) == len(data.STS_TASKS):
        scores["Avg"] = sum(float(f"{scores[t]:.2f}") for t in tasks) / len(tasks)
    return scores


def bench_eval(args):
    import transformers
    name = args.model or default_model()
    print(f"model {name}, pooler {args.pooler}, torch threads {torch.get_num_threads()}")

    start = time.perf_counter()
    ours = evaluate(BertModel.from_pretrained(name), load_tokenizer(name), args.pooler, "test", data_dir=args.data_dir)
    ours_s = time.perf_counter() - start
    print(f"ours (eval_sts.evaluate):             {ours_s:7.1f} s")
    print(format_table(ours["scores"]))

    start = time.perf_counter()
    reference = senteval_style(transformers.BertModel.from_pretrained(name).eval(),
                               transformers.AutoTokenizer.from_pretrained(name), args.pooler, data_dir=args.data_dir)
    ref_s = time.perf_counter() - start
    print(f"SentEval way (transformers.BertModel): {ref_s:7.1f} s")
    print(format_table(reference))
    diff = max(abs(ours["scores"][k] - reference[k]) for k in reference)
    print(f"speed-up {ref_s / ours_s:.2f}x; largest score difference {diff:.4f}")


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

    if task in data.BINARY_FILES:  # InnerKFoldClassifier
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


def bench_transfer(args):
    """The seven transfer tasks: ours (eval_transfer: each distinct sentence encoded once, the regressions
    trained together) against SentEval's way (its validation loops, one PyTorch regression at a time,
    SentEvalLogReg) on the same embeddings. The whole SentEval way takes over an hour on a 2-core CPU,
    so the reference runs the first --reference-folds of the ten outer folds of MR, CR, SUBJ and MPQA
    (41 of their 410 regressions a fold; compared with ours on the same folds) and all of SST2, TREC and
    MRPC; its time for the whole of a task is projected from the folds it ran."""
    import eval_transfer
    name = args.model or default_model()
    tasks = args.tasks or eval_transfer.TASKS
    if not set(args.reference_tasks or []) <= set(tasks):
        raise SystemExit(f"error: --reference-tasks must be some of the tasks ours runs: {' '.join(tasks)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"model {name}, pooler {args.pooler}, on {device}, torch threads {torch.get_num_threads()}")
    model, tokenizer = BertModel.from_pretrained(name).to(device), load_tokenizer(name)
    start = time.perf_counter()
    loaded = eval_transfer.load_tasks(tasks, args.data_dir)
    inputs = eval_transfer.embed(model, tokenizer, args.pooler, loaded)
    encoded = time.perf_counter()
    ours, seconds = {}, {}
    for task in tasks:
        t0 = time.perf_counter()
        ours[task] = eval_transfer.classify(task, inputs[task], device)  # numbers back on the host: synced
        seconds[task] = time.perf_counter() - t0
    ours_s = time.perf_counter() - start
    scores = {task: ours[task]["acc"] for task in tasks}
    scores["Avg"] = sum(scores.values()) / len(tasks)
    print(f"ours (eval_transfer): {ours_s:.1f} s in all: encoding {encoded - start:.1f} s, the regressions "
          f"{sum(seconds.values()):.1f} s ({', '.join(f'{t} {s:.1f}' for t, s in seconds.items())})")
    print(format_table(scores))
    if "MRPC" in ours:
        print(f"MRPC F1 {ours['MRPC']['f1']:.2f}")

    folds = args.reference_folds
    print(f"\nSentEval way on the same embeddings (MR, CR, SUBJ, MPQA: the first {folds} of 10 outer folds), "
          "on one core: its operations are too small to gain from two, and lose much on a busy machine")
    torch.set_num_threads(1)
    print(f"{'task':6} {'ours':>7} {'SentEval':>9} {'diff':>6}  {'ours s':>7} {'SentEval s':>11}")
    ours_total, ref_total = 0.0, 0.0
    for task in args.reference_tasks or tasks:
        t0 = time.perf_counter()
        reference = senteval_transfer_style(task, {k: (X.numpy(), y) for k, (X, y) in inputs[task].items()},
                                            outer_folds=folds)
        ref_s = time.perf_counter() - t0
        mine, whole = ours[task]["acc"], ""
        if task in data.BINARY_FILES and folds < 10:  # ours on the folds the reference ran
            mine = round(float(np.mean(ours[task]["fold_acc"][:folds])), 2)
            ref_s, whole = ref_s * 10 / folds, " (projected)"
        extra = f"  F1 ours {ours[task]['f1']:.2f}, SentEval {reference['f1']:.2f}" if task == "MRPC" else ""
        print(f"{task:6} {mine:7.2f} {reference['acc']:9.2f} {mine - reference['acc']:6.2f}  "
              f"{seconds[task]:7.1f} {ref_s:11.1f}{whole}{extra}", flush=True)
        ours_total, ref_total = ours_total + seconds[task], ref_total + ref_s
    print(f"the regressions of these tasks: ours {ours_total:.1f} s, the SentEval way {ref_total:.1f} s "
          f"(projected to all folds): {ref_total / ours_total:.1f}x")


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, per GPU (NVIDIA data sheets)


def random_bert_base(folder):
    """BERT-base with random weights and the packaged (uncased WordPiece, same vocabulary) tokenizer: the
    paper's model shape, with nothing to download. Speed does not depend on the weights."""
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(folder)
    load_tokenizer(default_model()).save_pretrained(folder)
    return str(folder)


def model_name(args, folder):
    return random_bert_base(folder) if args.bert_base else args.model or default_model()


def bench_train(args):
    """Time per SimCSE update on the same batches: ours as train.py runs it on this device (on a GPU: fixed
    shapes, torch.compile, bf16 autocast, fused AdamW; on a CPU: dense layers on real tokens only) against
    transformers.BertModel eager (padded to the longest, AdamW's default). On a GPU also the model FLOP
    utilisation: 6 x real tokens x matmul weights per update, over the GPU's dense bf16 peak."""
    import tempfile
    import transformers
    from simcse import contrastive_loss, embed_views
    from train import TrainConfig, global_batches, update
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else lambda: None  # GPU work is asynchronous: wait before reading the clock
    amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    name = model_name(args, tempfile.mkdtemp())
    examples, _ = data.read_training_file(data.training_file(args.train_file, args.data_dir))
    n_views = len(examples[0])
    tokenizer = load_tokenizer(name)
    order = global_batches(len(examples), args.batch_size, seed=0)
    texts = [[row[k] for k in range(n_views) for row in (examples[i] for i in next(order))]
             for _ in range(args.warmup + args.steps)]
    ours_batches = [tokenizer(t, 32, pad_to_max_length=cuda) for t in texts]  # as train.py on this device
    reference_batches = [tokenizer(t, 32) for t in texts]
    cfg = TrainConfig(pooler="cls")

    def timed(batches, step):
        batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
        for i, batch in enumerate(batches):
            if i == args.warmup:
                sync()
                start = time.perf_counter()
            torch.manual_seed(i)
            step(batch)
        sync()
        return (time.perf_counter() - start) / args.steps

    def ours(model):
        model.pack_padding = not cuda
        step_model = torch.compile(model) if cuda and args.compile else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.0, fused=True)
        scaler = torch.amp.GradScaler(enabled=amp == torch.float16)
        step_model.train()
        return timed(ours_batches, lambda b: update(step_model, model, optimizer, scaler, b, n_views, cfg, amp))

    def reference(model):
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.0)
        model.train()

        def step(batch):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = contrastive_loss(embed_views(model, batch, n_views, "cls"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return timed(reference_batches, step)

    models = {"ours": (ours, BertModel.from_pretrained(name).to(device)),
              "transformers": (reference, transformers.BertModel.from_pretrained(name).to(device))}
    times = {k: [] for k in models}
    for _ in range(args.rounds):  # alternate, so that neither gets the machine's better moments only
        for key, (run, model) in models.items():
            times[key].append(run(model))
    ours_s, theirs_s = min(times["ours"]), min(times["transformers"])
    c = models["ours"][1].config
    tokens = sum(int(b["attention_mask"].sum()) for b in ours_batches[args.warmup:]) / args.steps
    flops = 6 * tokens * c.num_hidden_layers * (4 * c.hidden_size ** 2 + 2 * c.hidden_size * c.intermediate_size)
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in gpu), None)
    print(f"model {name} ({c.num_hidden_layers} layers, {c.hidden_size} wide), {n_views} sentences x batch "
          f"{args.batch_size} from {args.train_file}, max length 32, {args.steps} timed steps after {args.warmup}, "
          f"best of {args.rounds} rounds, on {gpu}" + ("" if cuda else f", torch threads {torch.get_num_threads()}"))
    print(f"all rounds (ms/step): { {k: [round(1000 * t, 2) for t in v] for k, v in times.items()} }")
    print(f"ours:                   {1000 * ours_s:8.2f} ms/step  {args.batch_size / ours_s:8.1f} examples/s")
    print(f"transformers.BertModel: {1000 * theirs_s:8.2f} ms/step  {args.batch_size / theirs_s:8.1f} examples/s")
    print(f"ratio ours/transformers {theirs_s / ours_s:.2f}x")
    print(f"real tokens/step {tokens:.0f}; {flops / ours_s / 1e12:.2f} TFLOP/s" +
          (f"; MFU {100 * flops / ours_s / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s" if peak else ""))


def bench_run(args):
    """A timed train.py run shaped like the paper's (evaluation and saving every --eval-steps steps), and the
    projected time of the whole run: the step-0 evaluation, then one (eval-steps updates + evaluation and
    checkpoints) segment per --eval-steps of the paper's steps, at the fastest segment's pace after the first
    (which includes compiling)."""
    import tempfile
    from train import TrainConfig, train
    work = Path(tempfile.mkdtemp())
    name = model_name(args, work / "model")
    examples, _ = data.read_training_file(data.training_file(args.train_file, args.data_dir))
    supervised = len(examples[0]) == 3
    cfg = TrainConfig(model=name, train_file=args.train_file, output_dir=str(work / "run"), batch_size=args.batch_size,
                      max_steps=args.steps, eval_steps=args.eval_steps, mlp_only_train=not supervised,
                      lr=5e-5 if supervised else 3e-5, data_dir=args.data_dir)
    start = time.perf_counter()
    log = train(cfg, test=False)["log"]
    wall = time.perf_counter() - start
    segments = [b["seconds"] - a["seconds"] for a, b in zip(log, log[1:])]
    pace = min(segments[1:] or segments)
    paper_steps = 3 * (275_601 // 512) if supervised else 1_000_000 // 64  # sup-bert, unsup-bert
    projected = log[0]["seconds"] + pace * paper_steps / args.eval_steps
    print(f"{args.steps} steps of {args.batch_size} ({'supervised' if supervised else 'unsupervised'}), evaluated "
          f"every {args.eval_steps}: segments of {args.eval_steps} steps + evaluation took {[round(s, 1) for s in segments]} s;"
          f" step-0 evaluation {log[0]['seconds']:.1f} s; the whole call {wall:.1f} s (loading and compiling included)")
    print(f"the paper's run ({paper_steps} steps, an evaluation every {args.eval_steps}): projected "
          f"{projected / 60:.1f} min at {pace / args.eval_steps * 1000:.1f} ms per step, evaluation included")


def bench_search(args):
    """Exact top-k search of real queries in an index of random unit vectors (the index's content does not
    change the work)."""
    from simcse import SimCSE
    tool = SimCSE(args.model or default_model(), pooler="avg")
    dev = data.load_sts("STSBenchmark", args.data_dir)["dev"]
    queries = list(dict.fromkeys(dev.sent1))[:args.queries]
    generator = torch.Generator().manual_seed(0)
    dim = tool.model.config.hidden_size
    embeddings = torch.nn.functional.normalize(torch.randn(args.index_size, dim, generator=generator), dim=-1)
    tool.index = {"sentences": [f"sentence {i}" for i in range(args.index_size)], "embeddings": embeddings.to(tool.device)}
    tool.search(queries[:2])  # warm-up
    start = time.perf_counter()
    z = tool.encode(queries, keepdim=True).to(tool.device)
    encoded = time.perf_counter()
    tool.nearest(z, args.top_k)
    found = time.perf_counter()
    results = tool.search(queries, threshold=0.0, top_k=args.top_k)
    total = time.perf_counter() - found
    assert len(results) == len(queries) and all(len(r) == args.top_k for r in results)
    print(f"{len(queries)} queries, index of {args.index_size:,} x {dim} ({embeddings.numel() * 4 / 2**20:.0f} MiB), "
          f"top {args.top_k}, {tool.device}, torch threads {torch.get_num_threads()}")
    print(f"encode the queries: {encoded - start:6.3f} s")
    print(f"exact top-k:        {found - encoded:6.3f} s")
    print(f"search (both):      {total:6.3f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    ev = sub.add_parser("eval", help="seven-task STS test evaluation, ours vs. the SentEval way")
    ev.add_argument("--model", help="checkpoint folder or hub id (default: the packaged all-MiniLM-L6-v2)")
    ev.add_argument("--pooler", default="cls_before_pooler")
    ev.add_argument("--data-dir")
    tr = sub.add_parser("train", help="time per update, ours (as train.py on this device) vs. transformers eager")
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--steps", type=int, default=5, help="timed steps per round")
    tr.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiling happens there)")
    tr.add_argument("--rounds", type=int, default=2)
    tr.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="on a GPU (default: on)")
    ru = sub.add_parser("run", help="a timed train.py run and the projected time of the paper's whole run")
    ru.add_argument("--batch-size", type=int, default=64, help="64: unsup-bert; 512 with an NLI file: sup-bert")
    ru.add_argument("--steps", type=int, default=375)
    ru.add_argument("--eval-steps", type=int, default=125)
    for p in (tr, ru):
        p.add_argument("--model", help="checkpoint folder or hub id (default: the packaged all-MiniLM-L6-v2)")
        p.add_argument("--bert-base", action="store_true", help="a random-init BERT-base instead of --model")
        p.add_argument("--train-file", default="wiki/wiki1m_head.txt", help="relative to the data folder")
        p.add_argument("--data-dir")
    se = sub.add_parser("search", help="SimCSE.search: queries against a large index of stored embeddings")
    se.add_argument("--model", help="checkpoint folder or hub id (default: the packaged all-MiniLM-L6-v2)")
    se.add_argument("--index-size", type=int, default=200_000)
    se.add_argument("--queries", type=int, default=100)
    se.add_argument("--top-k", type=int, default=5)
    se.add_argument("--data-dir")
    tf = sub.add_parser("transfer", help="the seven transfer tasks, ours vs. the SentEval way (a reduced run)")
    tf.add_argument("--model", help="checkpoint folder or hub id (default: the packaged all-MiniLM-L6-v2)")
    tf.add_argument("--pooler", default="avg")
    tf.add_argument("--tasks", nargs="+", help="the tasks ours evaluates (default: all seven)")
    tf.add_argument("--reference-tasks", nargs="+", help="the tasks the SentEval way runs (default: --tasks)")
    tf.add_argument("--reference-folds", type=int, default=1,
                    help="outer folds of MR, CR, SUBJ, MPQA the SentEval way runs (default: 1 of 10)")
    tf.add_argument("--data-dir")
    args = parser.parse_args()
    {"eval": bench_eval, "train": bench_train, "run": bench_run, "search": bench_search,
     "transfer": bench_transfer}[args.what](args)


if __name__ == "__main__":
    main()
