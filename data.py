"""Data: the data folder, and SimCSE's training files.

One data folder serves the whole project, laid out as

    <data-dir>/senteval/STS/STS12-en-test ... STS16-en-test, STSBenchmark    (SentEval's downstream/ tree)
    <data-dir>/senteval/SICK, MR, CR, ...                                    (read by senteval.py)
    <data-dir>/wiki/wiki1m_for_simcse.txt (or a slice of it)                 unsupervised training
    <data-dir>/nli/nli_for_simcse.csv                                         supervised training

It is found from the --data-dir flag, else $SIMCSE_DATA_DIR, else ./data, else ../shared/data. What a run
needs and the folder lacks is fetched from the authors' dataset repository on the Hugging Face hub
(download.py; `python data.py download` fetches everything up front).
"""
import argparse
import csv
import io
import os
from pathlib import Path

import torch

from formats import senteval
from formats.download import (DATA_DIR_ENV, GET_DATA_HELP, HUB_FILES, fetch_file, hub_download, require,
                              unpack_senteval)
from formats.files import DataError, read_lines, read_text

REPO = Path(__file__).resolve().parent
DEFAULT_DATA_DIRS = (REPO / "data", REPO.parent / "shared" / "data")
SLICE_OF = {"wiki/wiki1m_head.txt": "wiki/wiki1m_for_simcse.txt",  # small files of the shared data folder,
            "nli/nli_small_for_simcse.csv": "nli/nli_for_simcse.csv"}  # and the authors' file to use instead


def data_dir(path=None) -> Path:
    """The project's data folder: the argument, else $SIMCSE_DATA_DIR, else the first default that exists."""
    if path or os.environ.get(DATA_DIR_ENV):
        return Path(path or os.environ[DATA_DIR_ENV])
    return next((d for d in DEFAULT_DATA_DIRS if d.is_dir()), DEFAULT_DATA_DIRS[0])


# --- SentEval's tasks, from the data folder ------------------------------------------------------

def senteval_dir(root=None) -> Path:
    """<data-dir>/senteval, unpacked from the authors' senteval.tar and checked if the folder is missing."""
    folder = data_dir(root) / "senteval"
    if not folder.exists():
        unpack_senteval(hub_download("senteval.tar"), folder, senteval.check)
    return folder


def load_sts(task: str, root=None, splits=None) -> dict:
    """{subset or split: STSPairs} of one of senteval.STS_TASKS (STS-B, SICK-R: only `splits`, if given)."""
    return senteval.read_sts_task(task, senteval_dir(root), splits)


def load_transfer(task: str, root=None) -> dict:
    """{split: Labelled} for one of senteval.TRANSFER_TASKS."""
    return senteval.read_transfer_task(task, senteval_dir(root))


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


def read_training_file(path):
    """(examples, skipped): each example a tuple of the sentences that form one row of a batch --
    (s, s) for a sentence of a .txt file (two dropout views of it), (premise, entailment[, contradiction])
    for a CSV."""
    path = Path(path)
    if path.suffix == ".csv":
        return read_nli_csv(path)
    sentences, skipped = read_sentences(path)
    return [(s, s) for s in sentences], skipped


# --- What each step draws: its batch and its random numbers, functions of the seed and the step alone ----

DROPOUT, MLM_MASKS, AUGMENTATION = 0, 1, 2  # a step's streams of random numbers (augmentation: 2 + view)


def step_seed(seed, process, step, stream):
    """The seed of one stream of random numbers (the dropout masks, MLM's masked tokens, a view's
    augmentation) of one process at one training step. Every random draw of training is a function of these
    four numbers alone, never of what ran before it: so --resume after a kill draws the masks the run it
    continues would have drawn, torchrun's processes draw masks of their own, and the streams do not shift
    each other (--do-mlm leaves the dropout masks as they are). Python's hash of a tuple of ints is the same
    in every process and run (a str's is not)."""
    return hash((seed, process, step, stream))


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

def download(root=None):
    """Everything the paper's runs need: the evaluation sets and the authors' two training files."""
    folder = data_dir(root)
    senteval_dir(folder)
    for name in HUB_FILES:
        if name != "senteval" and not (folder / name).exists():
            fetch_file(name, folder)
    print(f"the data folder {folder} is complete")


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
