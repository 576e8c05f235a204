"""Command lines read one way by every command: each value checked as it is read -- numbers in their range,
paths of the right kind, nothing given twice -- before any work; every error one line (`error: ...`, exit
status 1), argparse's own too; Ctrl-C as exit status 130 and SIGTERM as 143, from a command's first line
on."""
import argparse
import contextlib
import math
import os
import re
import signal
import sys
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """argparse as every command uses it: no prefix abbreviations (`--over` is no `--overwrite`), a flag
    given twice refused (argparse keeps the last), `--lr -1e-5` read as a value, errors as one line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})
        # argparse's own pattern (-1, -.5) takes -1e-5 and -inf for flags: "expected one argument"
        self._negative_number_matcher = re.compile(r"^-(\.?\d|inf(inity)?$|nan$)", re.IGNORECASE)

    def parse_known_args(self, args=None, namespace=None):  # (subcommands' parsers are Parsers too)
        args = sys.argv[1:] if args is None else list(args)
        seen = {}
        for arg in args[:args.index("--")] if "--" in args else args:
            flag = arg.split("=", 1)[0]
            action = self._option_string_actions.get(flag)
            if action is None or isinstance(action, (argparse._HelpAction, argparse._AppendAction,
                                                     argparse._CountAction)):
                continue
            if action in seen:
                self.error(f"{flag} given twice" if seen[action] == flag else
                           f"{seen[action]} and {flag} given together: choose one")
            seen[action] = flag
        return super().parse_known_args(args, namespace)

    def error(self, message):
        sys.exit(f"error: {message} (usage: {self.prog} --help)")


class Distinct(argparse.Action):
    """A list flag (nargs="+") whose values are all different: STS16 twice would count twice in Avg."""

    def __call__(self, parser, namespace, values, option_string=None):
        if twice := list(dict.fromkeys(v for v in values if values.count(v) > 1)):
            parser.error(f"argument {option_string}: {' '.join(map(str, twice))} given twice")
        setattr(namespace, self.dest, values)


def checked(convert, expected, ok=lambda value: True):
    """An argparse type=: the text converted, if it converts and ok(value); else one line of what was
    expected."""
    def parse(text):
        try:
            value = convert(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value
    return parse


SIZE = checked(int, "an integer in [1, 2**63)", lambda v: 1 <= v < 2**63)  # 2**63: beyond torch's int64
COUNT = checked(int, "an integer in [0, 2**63)", lambda v: 0 <= v < 2**63)
NUMBER = checked(float, "a finite number", math.isfinite)
PROBABILITY = checked(float, "a probability in [0, 1)", lambda v: 0 <= v < 1)
TEXT = checked(str, "a value that is not empty", lambda v: v.strip() != "")


def seed(below):
    """Seeds in [0, below): 2**32 for numpy's RandomState, 2**63 for torch.manual_seed."""
    return checked(int, f"an integer in [0, 2**{below.bit_length() - 1})", lambda v: 0 <= v < below)


def file_problem(path):
    """What keeps `path` from being read as a file, or None (a FIFO would wait forever; a folder: no data)."""
    if not str(path).strip():
        return "an empty path"
    if not (path := Path(path)).exists():
        return "no such file"
    return None if path.is_file() else "not a regular file (a folder, FIFO or device)"


def output_problem(path, folder=False):
    """What keeps `path` from being written (folder: made, with its parents), or None: its folder must be
    there and writable; what is there already must be of its kind."""
    if not str(path).strip():
        return "an empty path"
    path = Path(os.path.abspath(path))
    if path.exists() and not (path.is_dir() if folder else path.is_file()):
        return "not a folder" if folder else "not a regular file (a folder, FIFO or device)"
    parent = path if folder else path.parent
    while folder and not parent.exists():
        parent = parent.parent  # the first folder that exists, in which the others are made
    if not parent.is_dir():
        return f"its folder {parent} does not exist" if not parent.exists() else f"{parent} is not a folder"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"its folder {parent} is not writable"


def folder_problem(path):
    """A folder read from or made (a data folder): not empty, and nothing else of that name."""
    if not str(path).strip():
        return "an empty path"
    return "not a folder" if Path(path).exists() and not Path(path).is_dir() else None


def path(problem):
    """An argparse type= of a path that problem(text) finds nothing wrong with."""
    def parse(text):
        if why := problem(text):
            raise argparse.ArgumentTypeError(f"{text!r}: {why}")
        return text
    return parse


INPUT_FILE, OUTPUT_FILE, FOLDER = path(file_problem), path(output_problem), path(folder_problem)
OUTPUT_FOLDER = path(lambda text: output_problem(text, folder=True))


def quiet_start(name):
    """A command's first line (name: its __name__): Ctrl-C or SIGTERM while its imports run end it as they
    end it later (exit status 130 or 143), not with a traceback; command_errors takes over from there."""
    if name == "__main__":
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # nothing is open yet: nothing to close
        signal.signal(signal.SIGTERM, lambda *_: os._exit(143))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it ends as Ctrl-C ends it."""


def terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def command_errors(interrupted=None):
    """Every command's way out: errors as one line, Ctrl-C as exit status 130 and SIGTERM as 143 (as a shell
    reports them, with `interrupted` said first), so that `python X.py ... && next` stops after a failed or
    interrupted run."""
    sigint = signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, from here on
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
        signal.signal(signal.SIGINT, signal.SIG_DFL if sigint is None else sigint)  # None: set outside Python
        signal.signal(signal.SIGTERM, signal.SIG_DFL if sigterm is None else sigterm)
