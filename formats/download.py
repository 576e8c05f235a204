"""Fetching the authors' data (their Hugging Face dataset princeton-nlp/datasets-for-simcse, which holds
everything the paper needs) and unpacking it so that a half-made file or folder never counts as present.
data.py calls these when its data folder lacks a file; `python data.py download` fetches everything."""
import os
import shutil
import sys
import tarfile
from pathlib import Path

from formats.files import DataError

HUB_DATASET = "princeton-nlp/datasets-for-simcse"  # the authors' copy of everything the paper needs
HUB_FILES = {"senteval": "senteval.tar", "wiki/wiki1m_for_simcse.txt": "wiki1m_for_simcse.txt",
             "nli/nli_for_simcse.csv": "nli_for_simcse.csv"}  # where each goes in the data folder
DATA_DIR_ENV = "SIMCSE_DATA_DIR"

GET_DATA_HELP = (
    f"Run `python data.py download` online (it fetches {', '.join(HUB_FILES.values())} from the Hugging Face "
    f"dataset {HUB_DATASET}), or download them by hand from huggingface.co/datasets/{HUB_DATASET}: unpack "
    "senteval.tar into <data-dir>/senteval/ (it holds STS/ and SICK/), put the other two in <data-dir>/wiki/ "
    f"and <data-dir>/nli/. Point at the folder with --data-dir or ${DATA_DIR_ENV}.")


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


def unpack_senteval(tar_path: Path, folder: Path, check):
    """Unpack beside `folder`, check(the unpacked folder) -- senteval.check: every task's scored pairs --,
    then rename: never a half-made folder."""
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
        check(inner)
        inner.rename(folder)
        print(f"unpacked and checked {tar_path.name} -> {folder}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
