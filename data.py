"""Data: where it lives, the STS evaluation sets (SentEval layout), and SimCSE's training files.

One data folder serves the whole project, laid out as

    <data-dir>/senteval/STS/STS12-en-test ... STS16-en-test, STSBenchmark    (SentEval's downstream/ tree)
    <data-dir>/senteval/SICK
    <data-dir>/wiki/wiki1m_for_simcse.txt (or a slice of it)                 unsupervised training
    <data-dir>/nli/nli_for_simcse.csv                                         supervised training

It is found from the --data-dir flag, else $SIMCSE_DATA_DIR, else ./data, else ../shared/data. What a run
needs and the folder lacks is fetched from the authors' dataset repository on the Hugging Face hub
(`python data.py download` fetches everything up front).
"""
import argparse
import csv
import io
import os
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent
DATA_DIR_ENV = "SIMCSE_DATA_DIR"
DEFAULT_DATA_DIRS = (REPO / "data", REPO.parent / "shared" / "data")

HUB_DATASET = "princeton-nlp/datasets-for-simcse"  # the authors' copy of everything the paper needs
HUB_FILES = {"senteval": "senteval.tar", "wiki/wiki1m_for_simcse.txt": "wiki1m_for_simcse.txt",
             "nli/nli_for_simcse.csv": "nli_for_simcse.csv"}  # where each goes in the data folder
SLICE_OF = {"wiki/wiki1m_head.txt": "wiki/wiki1m_for_simcse.txt",  # small files of the shared data folder,
            "nli/nli_small_for_simcse.csv": "nli/nli_for_simcse.csv"}  # and the authors' file to use instead

GET_DATA_HELP = (
    f"Run `python data.py download` online (it fetches {', '.join(HUB_FILES.values())} from the Hugging Face "
    f"dataset {HUB_DATASET}), or download them by hand from huggingface.co/datasets/{HUB_DATASET}: unpack "
    "senteval.tar into <data-dir>/senteval/ (it holds STS/ and SICK/), put the other two in <data-dir>/wiki/ "
    f"and <data-dir>/nli/. Point at the folder with --data-dir or ${DATA_DIR_ENV}.")


class DataError(ValueError):
    """Malformed input data; the message names the file and line."""


def data_dir(path=None) -> Path:
    """The project's data folder: the argument, else $SIMCSE_DATA_DIR, else the first default that exists."""
    if path or os.environ.get(DATA_DIR_ENV):
        return Path(path or os.environ[DATA_DIR_ENV])
    return next((d for d in DEFAULT_DATA_DIRS if d.is_dir()), DEFAULT_DATA_DIRS[0])


def require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found. {GET_DATA_HELP}")
    return path


def read_text(path: Path) -> str:
    """A UTF-8 text file with \\n line ends (a BOM is dropped; CRLF read as LF); bad bytes are a clear
    error."""
    raw = require(Path(path)).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lines(path: Path):
    return read_text(path).splitlines()


# --- STS evaluation sets ------------------------------------------------------------------------

@dataclass
class STSPairs:
    """Sentence pairs with gold similarity scores (0-5)."""
    sent1: list
    sent2: list
    scores: list
    source: Path = None  # the file they were read from


def normalize(sentence: str) -> str:
    # SentEval splits every sentence into words and the SimCSE batcher joins them with single spaces.
    return " ".join(sentence.split())


def parse_score(text, path, lineno):
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}:{lineno}: expected a similarity score, got {text!r}") from None


# SentEval's subsets per year ("all" setting: concatenated). STS13 has no SMT subset (license).
STS_YEARS = {
    "STS12": ["MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"],
    "STS13": ["FNWN", "headlines", "OnWN"],
    "STS14": ["deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"],
    "STS15": ["answers-forums", "answers-students", "belief", "headlines", "images"],
    "STS16": ["answer-answer", "headlines", "plagiarism", "postediting", "question-question"],
}


def read_sts_subset(folder: Path, subset: str) -> STSPairs:
    """STS.input.<subset>.txt (two tab-separated sentences a line) + STS.gs.<subset>.txt (a score a line).

    Pairs whose gold line is empty are unscored and skipped, as in SentEval."""
    in_path, gs_path = folder / f"STS.input.{subset}.txt", folder / f"STS.gs.{subset}.txt"
    inputs, golds = read_lines(in_path), read_lines(gs_path)
    if len(inputs) != len(golds):
        raise DataError(f"{in_path} has {len(inputs)} lines but {gs_path} has {len(golds)}")
    pairs = STSPairs([], [], [], gs_path)
    for lineno, (line, gold) in enumerate(zip(inputs, golds), 1):
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(f"{in_path}:{lineno}: expected 2 tab-separated sentences, "
                            f"found {len(columns)} column(s)")
        if gold.strip() == "":
            continue
        pairs.sent1.append(normalize(columns[0]))
        pairs.sent2.append(normalize(columns[1]))
        pairs.scores.append(parse_score(gold, gs_path, lineno))
    return pairs


def read_tsv_pairs(path: Path, columns, skip_header: bool) -> STSPairs:
    """Pairs from a tab-separated file; columns = (sentence 1, sentence 2, score) indices."""
    pairs = STSPairs([], [], [], path)
    lines = read_lines(path)
    for lineno, line in enumerate(lines[1:] if skip_header else lines, 2 if skip_header else 1):
        fields = line.strip().split("\t")
        if len(fields) <= max(columns):
            raise DataError(f"{path}:{lineno}: expected at least {max(columns) + 1} tab-separated columns, "
                            f"found {len(fields)}")
        a, b, score = (fields[i] for i in columns)
        pairs.sent1.append(normalize(a))
        pairs.sent2.append(normalize(b))
        pairs.scores.append(parse_score(score, path, lineno))
    return pairs


def read_stsb(path: Path) -> STSPairs:
    return read_tsv_pairs(path, columns=(5, 6, 4), skip_header=False)  # genre, file, year, id, score, s1, s2


def read_sick(path: Path) -> STSPairs:
    return read_tsv_pairs(path, columns=(1, 2, 3), skip_header=True)  # pair_ID, A, B, relatedness, entailment


STS_TASKS = list(STS_YEARS) + ["STSBenchmark", "SICKRelatedness"]


def load_sts(task: str, root=None, splits=("train", "dev", "test")) -> dict:
    """{subset or split name: STSPairs} for one of STS_TASKS, read from <data-dir>/senteval/ (fetched if
    missing); of STS-B and SICK-R only the splits asked (a broken test file never stops training on dev)."""
    return read_senteval_task(task, senteval_dir(root), splits)


def read_senteval_task(task: str, senteval: Path, splits=("train", "dev", "test")) -> dict:
    sts = senteval / "STS"
    if task in STS_YEARS:
        folder = require(sts / f"{task}-en-test")
        return {subset: read_sts_subset(folder, subset) for subset in STS_YEARS[task]}
    if task == "STSBenchmark":
        return {split: read_stsb(sts / "STSBenchmark" / f"sts-{split}.csv") for split in splits}
    if task == "SICKRelatedness":
        sick = senteval / "SICK"
        files = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
        return {split: read_sick(sick / files[split]) for split in splits}
    raise ValueError(f"unknown STS task {task!r}; expected one of {', '.join(STS_TASKS)}")


# --- Training files (the authors' formats) ------------------------------------------------------

def read_sentences(path):
    """Unsupervised SimCSE's input: one sentence a line. Returns (sentences, number of blank lines
    skipped)."""
    lines = read_lines(path)
    sentences = [line.strip() for line in lines if line.strip()]
    return sentences, len(lines) - len(sentences)


def read_nli_csv(path):
    """Supervised SimCSE's input: a CSV with header sent0,sent1[,hard_neg]
    (premise, entailment[, contradiction]).

    Returns (rows as tuples, number of blank lines and rows with a blank field skipped). A line that does not
    fit -- a wrong number of columns, a stray or unclosed quote -- refuses the whole file, naming the line
    where its row starts (an unclosed quote would otherwise swallow the lines after it into one field)."""
    reader = csv.reader(io.StringIO(read_text(path)), strict=True)
    rows, skipped, header, start = [], 0, None, 1
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:  # strict: `a,"b"c`, or a quote still open at the end of the file
            raise DataError(f"{path}:{start}: {e} (an unclosed or stray quote?)") from None
        if row is None:
            break
        first, start = start, reader.line_num + 1
        if any("\n" in field for field in row):
            raise DataError(f"{path}:{first}: a quoted field runs on to line {reader.line_num} "
                            "(an unclosed quote?)")
        if header is None:
            header = row
            if len(header) not in (2, 3):
                raise DataError(f"{path}:1: expected a header of 2 or 3 columns (sent0,sent1[,hard_neg]), "
                                f"got {header}")
            continue
        if not row:  # a blank line
            skipped += 1
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{first}: expected {len(header)} columns ({','.join(header)}), "
                            f"found {len(row)}")
        if any(not field.strip() for field in row):
            skipped += 1
            continue
        rows.append(tuple(field.strip() for field in row))
    if header is None:
        raise DataError(f"{path}:1: expected a header of 2 or 3 columns (sent0,sent1[,hard_neg]), "
                        "got an empty file")
    return rows, skipped


def training_file(name, root=None, announce=True) -> Path:
    """The training file `name`: a path, or relative to the data folder. One of the shared folder's slices
    (SLICE_OF) that is missing is replaced by the authors' full file; the authors' files are fetched."""
    path = Path(name)
    if path.exists():
        return regular(path)
    folder = data_dir(root)
    if (folder / name).exists():
        return regular(folder / name)
    full = SLICE_OF.get(name, name)
    if full != name and announce:
        print(f"{folder / name} not found: training on the authors' full file {full} instead")
    if not (folder / full).exists() and full in HUB_FILES:
        fetch_file(full, folder)
    return require(folder / full)


def regular(path: Path) -> Path:
    """A training file must be a file: reading a FIFO would wait forever, a folder or device is no data."""
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (a folder, FIFO or device): expected a training file")
    return path


# --- Fetching the authors' files from the Hugging Face hub ----------------------------------------

# SentEval's scored pairs: STS12-16 all subsets together; STS-B and SICK-R train/dev/test.
SCORED_PAIRS = {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186,
                "STSBenchmark": (5749, 1500, 1379), "SICKRelatedness": (4500, 500, 4927)}


def hub_download(filename) -> Path:
    """A file of the authors' dataset repository, through huggingface_hub (its cache and progress bar)."""
    from huggingface_hub import hf_hub_download
    print(f"fetching {filename} from the Hugging Face dataset {HUB_DATASET} ...")
    try:
        return Path(hf_hub_download(HUB_DATASET, filename, repo_type="dataset"))
    except Exception as e:  # offline, HF_HUB_OFFLINE=1, no such file: one line that says what to do
        raise FileNotFoundError(f"could not download {filename} ({type(e).__name__}). "
                                f"{GET_DATA_HELP}") from None


def fetch_file(name, folder: Path):
    """<folder>/<name> from the hub, copied beside and renamed: a half-copied file never counts as present."""
    source, dest = hub_download(HUB_FILES[name]), folder / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.copyfile(source, tmp)
    os.replace(tmp, dest)
    print(f"fetched {HUB_DATASET}/{HUB_FILES[name]} -> {dest}")


def senteval_dir(root=None) -> Path:
    """<data-dir>/senteval, unpacked from the authors' senteval.tar and checked if the folder is missing."""
    folder = data_dir(root) / "senteval"
    if not folder.exists():
        unpack_senteval(hub_download("senteval.tar"), folder)
    return folder


def unpack_senteval(tar_path: Path, folder: Path):
    """Unpack beside `folder`, check every task's scored pairs, then rename: never a half-made folder."""
    if not hasattr(tarfile, "data_filter"):  # Python 3.11.4+, 3.10.12+ and 3.9.17+ have it
        raise DataError(f"this Python ({sys.version.split()[0]}) cannot unpack {tar_path.name} safely "
                        "(no tarfile data filter): use Python 3.10.12+, 3.11.4+ or 3.12+")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed while unpacking
    try:
        try:
            with tarfile.open(tar_path) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataError(f"{tar_path}: cannot unpack ({type(e).__name__}: {e}); the download is damaged: "
                            "delete it and fetch it again") from None
        # STS/ at the top?
        inner = next((d for d in [tmp, *sorted(tmp.iterdir())] if (d / "STS").is_dir()), None)
        if inner is None:
            raise DataError(f"{tar_path}: no STS/ folder inside; expected SentEval's downstream/ layout")
        check_senteval(inner)
        inner.rename(folder)
        print(f"unpacked and checked {tar_path.name} -> {folder}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_senteval(senteval: Path):
    """Every STS task has SentEval's number of scored pairs; a mismatch names the file or folder."""
    for task, expected in SCORED_PAIRS.items():
        pairs = read_senteval_task(task, senteval)
        if task in STS_YEARS:
            found, where = sum(len(p.scores) for p in pairs.values()), f"{senteval}/STS/{task}-en-test"
            if found != expected:
                raise DataError(f"{where}: {found} scored pairs, SentEval's {task} has {expected}")
            continue
        for split, n in zip(("train", "dev", "test"), expected):
            if len(pairs[split].scores) != n:
                raise DataError(f"{pairs[split].source}: {len(pairs[split].scores)} scored pairs, SentEval's "
                                f"{task} {split} has {n}")


def download(root=None):
    """Everything the paper's runs need: the evaluation sets and the authors' two training files."""
    folder = data_dir(root)
    senteval_dir(folder)
    for name in HUB_FILES:
        if name != "senteval" and not (folder / name).exists():
            fetch_file(name, folder)
    print(f"the data folder {folder} is complete")


def read_training_file(path):
    """(examples, skipped): each example a tuple of the sentences that form one row of a batch --
    (s, s) for a sentence of a .txt file (two dropout views of it), (premise, entailment[, contradiction])
    for a CSV."""
    path = Path(path)
    if path.suffix == ".csv":
        return read_nli_csv(path)
    sentences, skipped = read_sentences(path)
    return [(s, s) for s in sentences], skipped


def batches(n, batch_size, seed, after_step=0):
    """The example indices of each step's batch from step after_step + 1 on: a new random order every
    epoch, an incomplete last batch dropped. A function of the seed alone, so a resumed run and a run on
    any number of processes see the same batches."""
    generator = torch.Generator().manual_seed(seed)
    step = 0
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n - batch_size + 1, batch_size):
            step += 1
            if step > after_step:
                yield order[start:start + batch_size]


# --- SentEval's transfer tasks (classification) ---------------------------------------------------
# Read as SentEval reads them (senteval/binary.py, sst.py, trec.py, mrpc.py): each sentence split on
# whitespace, and the words joined with single spaces by the SimCSE batcher (`normalize`).

TRANSFER_TASKS = ["MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC"]  # the order of the authors' table

# The two files of each binary task: the one labelled 1 first (SUBJ: objective is 1, as in SentEval).
BINARY_FILES = {"MR": ("MR", "rt-polarity.pos", "rt-polarity.neg"),
                "CR": ("CR", "custrev.pos", "custrev.neg"),
                "SUBJ": ("SUBJ", "subj.objective", "subj.subjective"),
                "MPQA": ("MPQA", "mpqa.pos", "mpqa.neg")}
TREC_CLASSES = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}  # senteval/trec.py's ids

# SentEval's sizes: the whole set (MR, CR, SUBJ, MPQA: cross-validated) or (train, dev, test) / (train, test).
TRANSFER_SIZES = {"MR": 10662, "CR": 3775, "SUBJ": 10000, "MPQA": 10606, "SST2": (67349, 872, 1821),
                  "TREC": (5452, 500), "MRPC": (4076, 1725)}


@dataclass
class Labelled:
    """Sentences (or sentence pairs: sent2 set) with integer class labels."""
    sent1: list
    labels: list
    sent2: list = None
    source: Path = None  # the file they were read from


def require_transfer(path: Path, task: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: not found; {task} is one of SentEval's transfer tasks, which come in the authors' "
            f"senteval.tar beside STS/ (as {path.parent.name}/). {GET_DATA_HELP}")
    return path


def read_latin1_lines(path: Path, universal_newlines=False):
    """The lines of a file SentEval opens as latin-1 (any byte decodes): MR, CR, SUBJ, MPQA split with
    str.splitlines() (binary.py; a blank line is a sample with no words: CR has 4, MPQA 3), TREC's read
    line by line, i.e. at \\n, \\r\\n or \\r only (trec.py)."""
    text = path.read_bytes().decode("latin-1")
    if universal_newlines:
        return [line.rstrip("\n") for line in io.StringIO(text, newline=None)]
    return text.splitlines()


def read_binary(folder: Path, task: str) -> Labelled:
    """MR, CR, SUBJ, MPQA: one sentence a line in two files; label 1 for the first file, 0 for the second."""
    _, first, second = BINARY_FILES[task]
    one, zero = (read_latin1_lines(require_transfer(folder / name, task)) for name in (first, second))
    return Labelled([normalize(s) for s in one + zero], [1] * len(one) + [0] * len(zero), source=folder)


def read_sst2(path: Path) -> Labelled:
    """SST/binary/sentiment-{train,dev,test}: `sentence<TAB>label` (0 or 1), UTF-8."""
    out = Labelled([], [], source=path)
    for lineno, line in enumerate(read_lines(require_transfer(path, "SST2")), 1):
        fields = line.strip().split("\t")
        if len(fields) != 2 or fields[1] not in ("0", "1"):
            raise DataError(f"{path}:{lineno}: expected `sentence<TAB>0 or 1`, got {line[:60]!r}")
        out.sent1.append(normalize(fields[0]))
        out.labels.append(int(fields[1]))
    return out


def read_trec(path: Path) -> Labelled:
    """TREC/{train_5500,TREC_10}.label: `COARSE:fine question words ...`, latin-1. The fine label is dropped:
    the task is the six coarse classes."""
    out = Labelled([], [], source=path)
    lines = read_latin1_lines(require_transfer(path, "TREC"), universal_newlines=True)
    for lineno, line in enumerate(lines, 1):
        target, _, rest = line.strip().partition(":")
        if target not in TREC_CLASSES or " " not in rest:
            raise DataError(f"{path}:{lineno}: expected `CLASS:fine question` with CLASS one of "
                            f"{', '.join(TREC_CLASSES)}, got {line[:60]!r}")
        out.sent1.append(normalize(rest.split(" ", 1)[1]))
        out.labels.append(TREC_CLASSES[target])
    return out


def read_mrpc(path: Path) -> Labelled:
    """MRPC/msr_paraphrase_{train,test}.txt: a header line, then
    `label<TAB>id<TAB>id<TAB>sentence<TAB>sentence` (label 1: a paraphrase)."""
    out = Labelled([], [], [], source=path)
    lines = read_lines(require_transfer(path, "MRPC"))
    for lineno, line in enumerate(lines[1:], 2):
        fields = line.strip().split("\t")
        if len(fields) < 5 or fields[0] not in ("0", "1"):
            raise DataError(f"{path}:{lineno}: expected 5 tab-separated columns starting with 0 or 1, "
                            f"got {len(fields)} column(s)")
        out.labels.append(int(fields[0]))
        out.sent1.append(normalize(fields[3]))
        out.sent2.append(normalize(fields[4]))
    return out


def load_transfer(task: str, root=None) -> dict:
    """{split: Labelled} for one of TRANSFER_TASKS, from <data-dir>/senteval/: "all" for the four
    cross-validated tasks, train/dev/test for SST2, train/test for TREC and MRPC."""
    senteval = senteval_dir(root)
    if task in BINARY_FILES:
        return {"all": read_binary(senteval / BINARY_FILES[task][0], task)}
    if task == "SST2":
        sst = senteval / "SST" / "binary"
        return {split: read_sst2(sst / f"sentiment-{split}") for split in ("train", "dev", "test")}
    if task == "TREC":
        trec = senteval / "TREC"
        return {"train": read_trec(trec / "train_5500.label"), "test": read_trec(trec / "TREC_10.label")}
    if task == "MRPC":
        mrpc = senteval / "MRPC"
        return {split: read_mrpc(mrpc / f"msr_paraphrase_{split}.txt") for split in ("train", "test")}
    raise ValueError(f"unknown transfer task {task!r}; expected one of {', '.join(TRANSFER_TASKS)}")


def main():
    parser = argparse.ArgumentParser(description="The project's data folder. " + GET_DATA_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="fetch the evaluation sets and the two training files")
    get.add_argument("--data-dir", help=f"data folder (default: ${DATA_DIR_ENV}, ./data or ../shared/data)")
    args = parser.parse_args()
    try:
        download(args.data_dir)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
