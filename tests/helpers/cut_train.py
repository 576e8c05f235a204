"""train.py, cut at one moment of its run:

    python tests/helpers/cut_train.py HOW WHERE STEP -- <train.py flags>

HOW: ctrl-c (SIGINT), sigterm, kill (SIGKILL, as kill -9), full-disk (the write fails with ENOSPC, as on a
full disk) or pause:PATH (wait there until the file PATH exists, then go on).
WHERE, for STEP:
    step            once the update of step STEP is done
    evaluation      in the STS-B dev evaluation after step STEP (0: the starting model's)
    in FILE         half of the new FILE written, in the save of step STEP (FILE as under --output-dir:
                    best/model.safetensors, last.pt, log.jsonl ...)
    after FILE      once FILE is renamed into place in that save, before the next file is
    deleting FILE   once FILE is deleted (a run that starts over deletes the results before it; STEP unused)
"""
import errno
import os
import pathlib
import runpy
import signal
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
how, where, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
assert sys.argv[4] == "--", "usage: cut_train.py HOW WHERE STEP -- <train.py flags>"
sys.argv = [str(REPO / "train.py")] + sys.argv[5:]
sys.path.insert(0, str(REPO))
import eval_sts  # noqa: E402
from formats import files  # noqa: E402
from infra import guard  # noqa: E402
from infra import run_folder  # noqa: E402
from runs import HalfWritten  # noqa: E402  (this folder)

out = pathlib.Path(sys.argv[sys.argv.index("--output-dir") + 1])
point, _, name = where.partition(" ")
target = pathlib.Path(os.path.realpath(out / name)) if name else None  # as files.write_files names it
now = {"trained": 0, "saving": None}  # the last step trained, the step being saved


def cut():
    if how == "full-disk":
        raise OSError(errno.ENOSPC, "No space left on device")
    if how.startswith("pause:"):
        while not os.path.exists(how.removeprefix("pause:")):
            time.sleep(0.05)
        return
    os.kill(os.getpid(), {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "kill": signal.SIGKILL}[how])


skip_if_nonfinite = guard.NonFiniteGuard.skip_if_nonfinite


def trained(self, loss, grad_norm, s, *signals):
    skip_if_nonfinite(self, loss, grad_norm, s, *signals)
    now["trained"] = s
    if point == "step" and s == step:
        cut()


guard.NonFiniteGuard.skip_if_nonfinite = trained
dev_metrics = eval_sts.dev_metrics


def evaluated(*args):
    if point == "evaluation" and now["trained"] == step:
        cut()
    return dev_metrics(*args)


eval_sts.dev_metrics = evaluated
save = run_folder.RunFolder.save


def saved(self, s, *args):
    now["saving"] = s
    try:
        return save(self, s, *args)
    finally:
        now["saving"] = None


run_folder.RunFolder.save = saved


def opened(path, *args, **kwargs):  # files.write_files's open: <FILE>.tmp
    f = open(path, *args, **kwargs)
    cutting = point == "in" and now["saving"] == step and pathlib.Path(path) == target.with_name(
        target.name + ".tmp")
    return HalfWritten(f, cut) if cutting else f


files.open = opened
replace = os.replace


def replaced(source, destination):
    replace(source, destination)
    if point == "after" and now["saving"] == step and pathlib.Path(destination) == target:
        cut()


os.replace = replaced
unlink = pathlib.Path.unlink


def unlinked(self, missing_ok=False):
    unlink(self, missing_ok)
    if point == "deleting" and self == out / name:
        cut()


pathlib.Path.unlink = unlinked
runpy.run_path(sys.argv[0], run_name="__main__")
