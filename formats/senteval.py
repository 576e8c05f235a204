"""SentEval's tasks, read as SentEval reads them from its downstream/ folder (here <data-dir>/senteval/): the
STS sets (STS12-16, STS-B, SICK-R) and the seven transfer tasks. Readers only: data.py finds the folder (or
fetches it) and download.py unpacks it, checked by `check` here."""
import io
import math
from dataclasses import dataclass
from pathlib import Path

from formats.download import GET_DATA_HELP
from formats.files import DataError, read_lines
from formats.training_files import csv_rows

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


def require(path: Path, what="") -> Path:
    """A data file that must be there: else one line saying how to get the data (`what`: more about it)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found{what}. {GET_DATA_HELP}")
    return path


def read_sts_subset(folder: Path, subset: str) -> STSPairs:
    """STS.input.<subset>.txt (two tab-separated sentences a line) + STS.gs.<subset>.txt (a score a line).

    Pairs whose gold line is empty are unscored and skipped, as in SentEval."""
    in_path, gs_path = folder / f"STS.input.{subset}.txt", folder / f"STS.gs.{subset}.txt"
    inputs, golds = read_lines(require(in_path)), read_lines(require(gs_path))
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
    lines = read_lines(require(path))
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


PAIR_COLUMNS = ("sentence1", "sentence2", "score")


def read_pairs(path) -> STSPairs:
    """Your own sentence pairs with gold scores: a .csv (or a .tsv, tabs between fields, quotes as text) whose
    header names the columns sentence1, sentence2 and score, in any order among others. Sentences are
    spaced as SentEval's (normalize); blank lines are skipped; anything else that does not fit -- a short
    row, an empty sentence, a score that is not a finite number -- refuses the file, naming its line."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        raise DataError(f"{path}: expected a .csv or .tsv file of sentence pairs")
    pairs, header = STSPairs([], [], [], path), None
    for line, row in csv_rows(path, "\t" if path.suffix.lower() == ".tsv" else ","):
        if header is None:
            header = [name.strip() for name in row]
            if missing := [c for c in PAIR_COLUMNS if header.count(c) != 1]:
                raise DataError(f"{path}:1: expected a header naming each of {', '.join(PAIR_COLUMNS)} once "
                                f"(not {', '.join(missing)}), got {row}")
            columns = [header.index(c) for c in PAIR_COLUMNS]
            continue
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} columns, found {len(row)}")
        a, b, score = (row[i] for i in columns)
        if not a.strip() or not b.strip():
            raise DataError(f"{path}:{line}: an empty sentence")
        if not math.isfinite(value := parse_score(score, path, line)):
            raise DataError(f"{path}:{line}: expected a finite score, got {score!r}")
        pairs.sent1.append(normalize(a))
        pairs.sent2.append(normalize(b))
        pairs.scores.append(value)
    if len(pairs.scores) < 2:
        raise DataError(f"{path}: {len(pairs.scores)} scored pair(s); a correlation needs at least 2")
    return pairs


def read_stsb(path: Path) -> STSPairs:
    return read_tsv_pairs(path, columns=(5, 6, 4), skip_header=False)  # genre, file, year, id, score, s1, s2


def read_sick(path: Path) -> STSPairs:
    return read_tsv_pairs(path, columns=(1, 2, 3), skip_header=True)  # pair_ID, A, B, relatedness, entailment


STS_TASKS = list(STS_YEARS) + ["STSBenchmark", "SICKRelatedness"]

def read_sts_task(task: str, senteval: Path, splits=None) -> dict:
    """{subset or split: STSPairs} of one of STS_TASKS from a senteval/ folder; for STS-B and SICK-R only the
    splits asked for (a damaged test file does not stop what needs dev alone)."""
    sts = senteval / "STS"
    if task in STS_YEARS:
        folder = require(sts / f"{task}-en-test")
        return {subset: read_sts_subset(folder, subset) for subset in STS_YEARS[task]}
    if task == "STSBenchmark":
        return {split: read_stsb(sts / "STSBenchmark" / f"sts-{split}.csv")
                for split in splits or ("train", "dev", "test")}
    if task == "SICKRelatedness":
        files = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
        return {split: read_sick(senteval / "SICK" / files[split]) for split in splits or files}
    raise ValueError(f"unknown STS task {task!r}; expected one of {', '.join(STS_TASKS)}")


# SentEval's scored pairs: STS12-16 all subsets together; STS-B and SICK-R train/dev/test.
SCORED_PAIRS = {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186,
                "STSBenchmark": (5749, 1500, 1379), "SICKRelatedness": (4500, 500, 4927)}


def check(senteval: Path):
    """Every STS task has SentEval's number of scored pairs; a mismatch names the file or folder."""
    for task, expected in SCORED_PAIRS.items():
        pairs = read_sts_task(task, senteval)
        if task in STS_YEARS:
            found, where = sum(len(p.scores) for p in pairs.values()), f"{senteval}/STS/{task}-en-test"
            if found != expected:
                raise DataError(f"{where}: {found} scored pairs, SentEval's {task} has {expected}")
            continue
        for split, n in zip(("train", "dev", "test"), expected):
            if len(pairs[split].scores) != n:
                raise DataError(f"{pairs[split].source}: {len(pairs[split].scores)} scored pairs, SentEval's "
                                f"{task} {split} has {n}")


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
    return require(path, f"; {task} is one of SentEval's transfer tasks, which come in the authors' "
                         f"senteval.tar beside STS/ (as {path.parent.name}/)")


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



def read_transfer_task(task: str, senteval: Path) -> dict:
    """{split: Labelled} for one of TRANSFER_TASKS from a senteval/ folder: "all" for the four
    cross-validated tasks, train/dev/test for SST2, train/test for TREC and MRPC."""
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
