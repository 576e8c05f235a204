"""What every command shares besides its command line's rules (formats/command_line.py): the flags that name a
model, its pooler, a data folder and a precision; the device; the JSON it writes (strict: no NaN token) and
the records it reads back, checked."""
import json
import math

import torch

from formats.command_line import FOLDER, TEXT
from formats.download import DATA_DIR_ENV
from simcse import POOLERS
from infra.speed import PRECISIONS


def add_common_flags(parser, model=True, pooler=True, data_dir=True, precision="fp32"):
    """The flags that commands share, declared once: --model ("required", True: optional, False: none),
    --pooler, --data-dir and --precision (its default; None: the command's own, e.g. train.py's preset;
    False: no flag)."""
    if model:
        default = "" if model == "required" else " (default: the packaged all-MiniLM-L6-v2)"
        parser.add_argument("--model", required=model == "required", type=TEXT,
                            help="checkpoint folder or Hugging Face hub id" + default)
    if pooler:
        parser.add_argument("--pooler", choices=POOLERS,
                            help="how to read a sentence embedding off BERT (default: the one a checkpoint "
                                 "of train.py was trained for, from its train_config.json; else cls)")
    if data_dir:
        parser.add_argument("--data-dir", type=FOLDER,
                            help=f"data folder (default: ${DATA_DIR_ENV}, ./data or ../shared/data)")
    if precision is not False:
        parser.add_argument("--precision", default=precision, choices=PRECISIONS,
                            help="matrix products in bf16 autocast or fp32; auto: bf16 where the hardware "
                                 "multiplies bf16 fast (GPUs, CPUs with AMX or AVX512-BF16), else fp32 "
                                 f"(default: {precision or 'auto'})")


def device():
    """Where a command runs: the GPU when there is one (torchrun's processes: distributed.Processes)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def strict(value):
    """value with every NaN or infinity as None, and each dict that held one saying which under
    "nan_or_inf": JSON that every reader accepts (json.dumps writes NaN, which strict parsers refuse)."""
    if isinstance(value, dict):
        bad = [k for k, v in value.items() if isinstance(v, float) and not math.isfinite(v)]
        return {**{k: strict(v) for k, v in value.items()}, **({"nan_or_inf": bad} if bad else {})}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def json_text(value, indent=None):
    return json.dumps(strict(value), indent=indent, allow_nan=False)


def json_lines(records):
    return "".join(json_text(r) + "\n" for r in records)


def expect(record, where="", **kinds):
    """record, read back from a file, holds each key of its kind -- a type (int: no bool), `dict | None`, or
    [{key: kind}], a list of records that hold those -- else a ValueError naming the key."""
    if not isinstance(record, dict):
        raise ValueError(f"{where or 'the file'} is not a record")
    for key, kind in kinds.items():
        value = record.get(key)
        if key not in record:
            raise ValueError(f"no {where + key!r}")
        if isinstance(kind, list) and isinstance(value, list):
            for i, item in enumerate(value):
                expect(item, f"{where}{key}[{i}].", **kind[0])
        elif isinstance(kind, list) or not isinstance(value, kind) or isinstance(value, bool):
            expected = "a list" if isinstance(kind, list) else getattr(kind, "__name__", kind)
            raise ValueError(f"{where}{key} {value!r} is not {expected}")
