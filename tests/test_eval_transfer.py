"""Transfer tasks: the readers against SentEval's sizes, the batched regressions against SentEval's loop
(senteval_reference.SentEvalLogReg, one regression at a time) and against torch.optim.Adam, the protocols
against senteval_reference.senteval_transfer_style, and the command line."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import data
from formats import senteval
from bench import senteval_reference
import eval_transfer as et

# --- Readers ------------------------------------------------------------------------------------


def test_real_sizes_match_senteval(data_root):
    for task in senteval.TRANSFER_TASKS:
        splits = data.load_transfer(task, data_root)
        sizes = [len(s.labels) for s in splits.values()]
        expected = senteval.TRANSFER_SIZES[task]
        assert sizes == (list(expected) if isinstance(expected, tuple) else [expected]), task
        for part in splits.values():
            assert len(part.sent1) == len(part.labels)
            assert part.sent2 is None or len(part.sent2) == len(part.labels)
            assert set(part.labels) == set(range(6 if task == "TREC" else 2)), task
    cr = data.load_transfer("CR", data_root)["all"]
    assert sum(s == "" for s in cr.sent1) == 4  # blank lines are samples in SentEval (binary.py loadFile)
    mr = data.load_transfer("MR", data_root)["all"]
    assert sum(mr.labels) == 5331 and mr.labels[0] == 1  # rt-polarity.pos first, labelled 1
    mrpc = data.load_transfer("MRPC", data_root)["train"]
    assert mrpc.labels[0] == 1 and mrpc.sent1[0].startswith("Amrozi accused his brother , whom he called")


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def test_readers_on_small_files(tmp_path):
    senteval = tmp_path / "senteval"
    write(senteval / "MR" / "rt-polarity.pos", "a  good film\n\ncaf\u00e9 fun\n", "latin-1")  # SentEval's
    write(senteval / "MR" / "rt-polarity.neg", "bad\n")
    mr = data.load_transfer("MR", tmp_path)["all"]
    assert (mr.sent1, mr.labels) == (["a good film", "", "caf\u00e9 fun", "bad"], [1, 1, 1, 0])
    write(senteval / "TREC" / "train_5500.label", "DESC:manner How did  it go ?\nNUM:date When ?\n")
    write(senteval / "TREC" / "TREC_10.label", "HUM:ind Who ?\n")
    trec = data.load_transfer("TREC", tmp_path)
    assert (trec["train"].sent1, trec["train"].labels) == (["How did it go ?", "When ?"], [1, 5])
    assert trec["test"].labels == [3]
    for split in ("train", "dev", "test"):
        write(senteval / "SST" / "binary" / f"sentiment-{split}", "it 's  fine . \t1\r\nno\t0\n")
    sst = data.load_transfer("SST2", tmp_path)["dev"]
    assert (sst.sent1, sst.labels) == (["it 's fine .", "no"], [1, 0])
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for split in ("train", "test"):
        write(senteval / "MRPC" / f"msr_paraphrase_{split}.txt", header + "0\t1\t2\tA b .\tC  d .\n")
    mrpc = data.load_transfer("MRPC", tmp_path)["test"]
    assert (mrpc.sent1, mrpc.sent2, mrpc.labels) == (["A b ."], ["C d ."], [0])


def test_malformed_lines_name_file_and_line(tmp_path):
    senteval = tmp_path / "senteval"
    write(senteval / "TREC" / "train_5500.label", "DESC:manner How ?\nWHAT:x Why ?\n")
    write(senteval / "TREC" / "TREC_10.label", "HUM:ind Who ?\n")
    with pytest.raises(data.DataError, match=r"train_5500.label:2: expected `CLASS:fine question`.*ABBR"):
        data.load_transfer("TREC", tmp_path)
    for split in ("train", "dev", "test"):
        write(senteval / "SST" / "binary" / f"sentiment-{split}", "fine\t1\nno label here\n")
    with pytest.raises(data.DataError, match=r"sentiment-train:2: expected `sentence<TAB>0 or 1`"):
        data.load_transfer("SST2", tmp_path)


def test_missing_task_folder_names_the_file_and_how_to_get_it(tmp_path):
    (tmp_path / "senteval" / "STS").mkdir(parents=True)  # the STS data only
    expected = r"senteval/CR/custrev.pos: not found; CR is one of SentEval's transfer tasks.*senteval.tar"
    with pytest.raises(FileNotFoundError, match=expected + r".*python data.py download"):
        data.load_transfer("CR", tmp_path)


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown transfer task\(s\) 'SST5'; "
                                         r"expected some of MR, CR, SUBJ, MPQA, SST2, TREC, MRPC"):
        et.load_tasks(["MR", "SST5"])


def test_senteval_order_is_words_then_label():
    part = senteval.Labelled(["c c c", "a", "b b", "d", "e e"], [0, 1, 1, 0, 1])
    assert et.senteval_order(part) == [3, 1, 2, 4, 0]  # by word count, then label; ties keep the file's order


# --- Folds and the regressions --------------------------------------------------------------------

@pytest.fixture
def one_thread():
    """Tiny operations, on one core: SentEval's loop is much slower on two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_folds_are_sklearns_stratified_kfold():
    sklearn = pytest.importorskip("sklearn.model_selection")
    rng = np.random.RandomState(0)
    for labels in (rng.randint(0, 2, 103), rng.randint(0, 6, 250), np.array([1] * 30 + [0] * 17)):
        ours = et.stratified_folds(labels, 10, 1111)
        theirs = sklearn.StratifiedKFold(10, shuffle=True, random_state=1111).split(labels[:, None], labels)
        for (a, b), (c, d) in zip(ours, theirs, strict=True):
            assert np.array_equal(a, c) and np.array_equal(b, d)


def problem(n=90, d=6, classes=2, seed=0, noise=0.5):
    """Features and labels of a noisy linear problem (argmax of a random linear map plus noise)."""
    rng = np.random.RandomState(seed)
    X = 3 * rng.randn(n, d).astype(np.float32)
    y = (X @ rng.randn(d, classes) + noise * rng.randn(n, classes)).argmax(1)
    return X, y


def test_separable_problem_is_learned():
    """(Data enough for many steps between two looks at the validation accuracy: on tiny data SentEval's
    regression stops, at its 6th look without a gain, before it has learnt much.)"""
    X, y = problem(n=1000, noise=0.0)
    weights, acc = et.train_logistic(torch.from_numpy(X), torch.from_numpy(y), 2, [np.arange(800)],
                                     [np.arange(800, 1000)], [et.REGS])
    assert (acc[0] >= 0.96).all()
    for r in range(len(et.REGS)):
        assert (et.predict(weights[0, r], torch.from_numpy(X[800:])).numpy() == y[800:]).mean() == acc[0, r]


def test_one_step_is_torch_adam_on_the_cross_entropy(one_thread):
    """`step` against autograd and torch.optim.Adam(weight_decay=l2reg) on an nn.Linear, for 3 steps."""
    X, y = problem(n=64, classes=3)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    linear = torch.nn.Linear(6, 3)
    adam = torch.optim.Adam(linear.parameters(), weight_decay=1e-2)
    W = torch.cat([linear.weight, linear.bias[:, None]], 1).detach()[None].clone()  # (1, C * R, d + 1), R = 1
    m, v = torch.zeros_like(W), torch.zeros_like(W)
    x = torch.cat([X, torch.ones(64, 1)], 1)
    scale = torch.full((1, 1, 1, 64), 1 / 64)
    target = torch.nn.functional.one_hot(y, 3).T[None, :, None] * scale
    for t in range(1, 4):
        loss = torch.nn.functional.cross_entropy(linear(X), y)
        adam.zero_grad()
        loss.backward()
        adam.step()
        as_tensor = lambda value: torch.tensor([[[value]]])
        et.step(W, m, v, x, scale, target, torch.full((1, 3, 1), 1e-2), as_tensor(1e-3 / (1 - 0.9 ** t)),
                as_tensor((1 - 0.999 ** t) ** 0.5), et.CLASSIFIER)
        expected = torch.cat([linear.weight, linear.bias[:, None]], 1).detach()
        assert (W[0] - expected).abs().max() < 1e-6


def test_batched_regressions_are_senteval_loops(one_thread):
    """train_logistic -- sets of different sizes (so different numbers of minibatches a pass), several L2
    strengths, a validation split drawn as SentEval's -- against SentEval's loop, one regression at a time."""
    X, y = problem(n=170)
    sets = [(np.arange(0, 100), np.arange(100, 130)), (np.arange(40, 170), np.arange(0, 40))]
    train, dev, rng = et.validation_split(150)
    sets.append((train, dev))
    streams = [np.random.RandomState(et.SEED), np.random.RandomState(et.SEED), rng]
    regs = [[1e-5, 1e-2], [1e-3, 1e-4], [1e-5, 1e-3]]
    cfg = et.Classifier(max_epoch=40)  # fewer passes at most, for time; some regressions stop there
    weights, acc = et.train_logistic(torch.from_numpy(X), torch.from_numpy(y), 2, [s[0] for s in sets],
                                     [s[1] for s in sets], regs, streams=streams, cfg=cfg, workers=2)
    for s, (train, dev) in enumerate(sets):
        for r, reg in enumerate(regs[s]):
            clf = senteval_reference.SentEvalLogReg(6, 2, reg, max_epoch=40)
            if s < 2:
                best = clf.fit(X[train], y[train], validation_data=(X[dev], y[dev]))
            else:  # the reference draws the same split itself
                best = clf.fit(X[:150], y[:150], validation_split=0.05)
            expected = torch.cat([clf.model[0].weight, clf.model[0].bias[:, None]], 1).detach()
            assert acc[s, r] == best
            assert (weights[s, r] - expected).abs().max() < 1e-5


@pytest.mark.parametrize("task", ["MR", "TREC", "MRPC", "SST2"])
def test_protocols_are_senteval_validation(task, one_thread):
    """SentEval's three protocols against senteval_reference.senteval_transfer_style, 3 folds, not 10."""
    pytest.importorskip("sklearn")
    X, y = problem(n=120, classes=6 if task == "TREC" else 2)
    cut = {"MR": {"all": slice(None)}, "TREC": {"train": slice(0, 90), "test": slice(90, None)},
           "MRPC": {"train": slice(0, 90), "test": slice(90, None)},
           "SST2": {"train": slice(0, 70), "dev": slice(70, 95), "test": slice(95, None)}}[task]
    splits = {name: (X[rows], y[rows]) for name, rows in cut.items()}
    ours = et.classify(task, {k: (torch.from_numpy(a), b) for k, (a, b) in splits.items()}, k=3)
    theirs = senteval_reference.senteval_transfer_style(task, splits, outer_folds=1 if task == "MR" else None,
                                                        kfold=3)
    if task == "MR":
        assert ours["fold_acc"][0] == theirs["acc"]
    else:
        assert (ours["acc"], ours["devacc"]) == (theirs["acc"], theirs["devacc"])
    if task == "MRPC":
        assert ours["f1"] == theirs["f1"]


def test_f1_is_sklearns():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.RandomState(0)
    predicted, gold = rng.randint(0, 2, 50), rng.randint(0, 2, 50)
    expected = round(100 * metrics.f1_score(gold, predicted), 2)
    assert et.f1(torch.from_numpy(predicted), torch.from_numpy(gold)) == expected


# --- The whole pipeline -----------------------------------------------------------------------------

def small_senteval(root):
    """All seven tasks in SentEval's layout, a few dozen sentences each."""
    rng = np.random.RandomState(0)
    words = "a good bad film plot actor fun dull great poor story what who when where how".split()
    sentence = lambda: " ".join(rng.choice(words, size=rng.randint(2, 8)))
    tree = root / "senteval"
    for task, (folder, first, second) in senteval.BINARY_FILES.items():
        for name in (first, second):
            write(tree / folder / name, "".join(sentence() + "\n" for _ in range(30)))
    for split, n in (("train", 60), ("dev", 20), ("test", 20)):
        write(tree / "SST" / "binary" / f"sentiment-{split}",
              "".join(f"{sentence()}\t{i % 2}\n" for i in range(n)))
    classes = list(senteval.TREC_CLASSES)
    for name, n in (("train_5500.label", 72), ("TREC_10.label", 24)):
        write(tree / "TREC" / name, "".join(f"{classes[i % 6]}:x {sentence()} ?\n" for i in range(n)))
    for split, n in (("train", 60), ("test", 20)):
        header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        write(tree / "MRPC" / f"msr_paraphrase_{split}.txt",
              header + "".join(f"{i % 2}\t{i}\t{i}\t{sentence()}\t{sentence()}\n" for i in range(n)))


def test_evaluate_reports_seven_tasks_and_their_average(tmp_path, minilm_dir):
    from bert import BertConfig, BertModel
    from formats.tokenizer import load_tokenizer
    small_senteval(tmp_path)
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    model = BertModel(config)
    result = et.evaluate(model, load_tokenizer(minilm_dir), "avg", data_dir=tmp_path)
    assert list(result["scores"]) == senteval.TRANSFER_TASKS + ["Avg"]
    assert result["scores"]["Avg"] == sum(round(result["scores"][t], 2) for t in senteval.TRANSFER_TASKS) / 7
    assert len(result["details"]["MR"]["fold_acc"]) == 10 and "f1" in result["details"]["MRPC"]
    assert result["details"]["TREC"]["ntest"] == 24 and result["details"]["SST2"]["ndev"] == 20


def test_cli_on_trec(tiny_checkpoint, data_root, tmp_path):
    out = tmp_path / "transfer.json"
    run = subprocess.run([sys.executable, "eval_transfer.py", "--model", tiny_checkpoint, "--pooler", "avg",
                          "--tasks", "TREC", "--json", str(out), "--data-dir", str(data_root)],
                         cwd=data.REPO, capture_output=True, text=True, check=True)
    assert "TREC |  Avg. |" in run.stdout
    result = json.loads(out.read_text())
    assert set(result["scores"]) == {"TREC", "Avg"} and result["scores"]["TREC"] == result["scores"]["Avg"]
    trec = result["details"]["TREC"]
    assert (trec["ndev"], trec["ntest"]) == (5452, 500) and trec["l2reg"] in et.REGS
    assert 20 < trec["acc"] <= 100  # 6 classes: a random 2-layer BERT's embeddings carry the words


@pytest.mark.parametrize("args,message", [
    (["--tasks", "MR", "SST5"], "argument --tasks: invalid choice: 'SST5' (choose from 'MR', 'CR'"),
    (["--tasks", "CR"], "custrev.pos: not found; CR is one of SentEval's")])
def test_cli_errors_are_one_line(tmp_path, minilm_dir, args, message):
    (tmp_path / "senteval" / "STS").mkdir(parents=True)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "eval_transfer.py", "--model", minilm_dir, "--data-dir", str(tmp_path), *args]
    run = subprocess.run(command, cwd=data.REPO, capture_output=True, text=True, env=env)
    assert run.returncode != 0 and "Traceback" not in run.stderr and message in run.stderr
