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
from formats.command_line import FOLDER, Parser, command_errors, quiet_start
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import os
from pathlib import Path

import torch

from formats import senteval, training_files
from formats.senteval import require
from formats.download import DATA_DIR_ENV, GET_DATA_HELP, HUB_FILES, fetch_file, hub_download, unpack_senteval
from formats.files import DataError

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
    folder = senteval_dir(root)
    return senteval.read_sts_task(task, folder, splits)


def load_transfer(task: str, root=None) -> dict:
    """{split: Labelled} for one of senteval.TRANSFER_TASKS."""
    folder = senteval_dir(root)
    return senteval.read_transfer_task(task, folder)


# --- Training files (the authors' formats) ------------------------------------------------------

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


def read_training_file(name, root=None, announce=True):
    """(path, examples, skipped): the training file `name` (training_file), read whole or refused with a
    one-line error naming its line (formats/training_files.py). An example is a tuple of the sentences of one
    row of a batch: (s, s) for a sentence of a .txt file (two dropout views of it), (premise, entailment[,
    contradiction]) for a .csv."""
    path = training_file(name, root, announce)
    return (path, *training_files.read(path))


# --- Each step's batch ------------------------------------------------------------------------------

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


def main(argv=None):
    parser = Parser(description="The project's data folder. " + GET_DATA_HELP)  # (command_line.py)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="fetch the evaluation sets and the two training files")
    get.add_argument("--data-dir", type=FOLDER,
                     help=f"data folder (default: ${DATA_DIR_ENV}, ./data or ../shared/data)")
    args = parser.parse_args(argv)
    with command_errors():
        download(args.data_dir)


if __name__ == "__main__":
    main()
