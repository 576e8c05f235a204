"""What every command shares on its command line: errors as one line, Ctrl-C as exit status 130, the flags
that name a model, its pooler, a data folder and a precision, and the device."""
import contextlib
import signal
import sys

import torch

from formats.download import DATA_DIR_ENV
from simcse import POOLERS
from infra.speed import PRECISIONS


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it ends as Ctrl-C ends it."""


def terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def command_errors(interrupted=None):
    """Every command's way out: errors as one line, Ctrl-C as exit status 130 and SIGTERM as 143 (as a shell
    reports them, with `interrupted` said first), so that `python X.py ... && next` stops after a failed or
    interrupted run."""
    sigterm = signal.signal(signal.SIGTERM, terminate)  # `kill`, a scheduler's stop: ended as Ctrl-C ends
    try:
        yield
    except (OSError, ValueError, KeyError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt as e:
        if interrupted:
            print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)  # as a shell reports SIGTERM and SIGINT
    finally:
        signal.signal(signal.SIGTERM, sigterm)


def add_common_flags(parser, model=True, pooler=True, data_dir=True, precision="fp32"):
    """The flags that commands share, declared once: --model ("required", True: optional, False: none),
    --pooler, --data-dir and --precision (its default; None: the command's own, e.g. train.py's preset;
    False: no flag)."""
    if model:
        default = "" if model == "required" else " (default: the packaged all-MiniLM-L6-v2)"
        parser.add_argument("--model", required=model == "required",
                            help="checkpoint folder or Hugging Face hub id" + default)
    if pooler:
        parser.add_argument("--pooler", choices=POOLERS,
                            help="how to read a sentence embedding off BERT (default: the one a checkpoint "
                                 "of train.py was trained for, from its train_config.json; else cls)")
    if data_dir:
        parser.add_argument("--data-dir",
                            help=f"data folder (default: ${DATA_DIR_ENV}, ./data or ../shared/data)")
    if precision is not False:
        parser.add_argument("--precision", default=precision, choices=PRECISIONS,
                            help="matrix products in bf16 autocast or fp32; auto: bf16 where the hardware "
                                 "multiplies bf16 fast (GPUs, CPUs with AMX or AVX512-BF16), else fp32 "
                                 f"(default: {precision or 'auto'})")


def device():
    """Where a command runs: the GPU when there is one (torchrun's processes: distributed.Processes)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
