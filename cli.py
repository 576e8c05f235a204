"""What every command shares on its command line: errors as one line, Ctrl-C as exit status 130, the flags
that name a model, a data folder and a precision."""
import contextlib
import signal
import sys

from download import DATA_DIR_ENV
from simcse import POOLERS
from speed import PRECISIONS


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


def add_model_flags(parser, required=False):
    """--model and --pooler: which checkpoint, and which of its embeddings."""
    default = "" if required else " (default: the packaged all-MiniLM-L6-v2)"
    parser.add_argument("--model", required=required,
                        help="checkpoint folder or Hugging Face hub id" + default)
    parser.add_argument("--pooler", choices=POOLERS,
                        help="how to read a sentence embedding off BERT (default: the one a checkpoint of "
                             "train.py was trained for, from its train_config.json; else cls)")


def add_data_dir_flag(parser):
    parser.add_argument("--data-dir",
                        help=f"data folder (default: ${DATA_DIR_ENV}, ./data or ../shared/data)")


def add_precision_flag(parser):
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 (default; SentEval's numbers) or bf16 autocast (about twice as fast on "
                             "CPUs with AMX; README gives the drift); auto: bf16 where the hardware has it")
