"""Runs of train.py in a process of their own, whole or cut (cut_train.py), and what two runs must share."""
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--max-steps", "12", "--eval-steps", "4", "--batch-size", "8", "--no-test"]  # conftest.finished_run's


class HalfWritten:
    """An open file whose write takes half of what it is given, then calls then() (a cut, a full disk)."""
    def __init__(self, f, then):
        self.f, self.then = f, then

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.f.close()

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        self.then()

    def __getattr__(self, attribute):
        return getattr(self.f, attribute)


def with_flags(args, *flags):
    """args with flags' values in place of theirs (a flag given twice is refused), the rest added after."""
    args, flags = list(args), list(flags)
    while flags:
        flag = flags.pop(0)
        value = [flags.pop(0)] if flags and not flags[0].startswith("--") else []
        if flag in args and value:
            args[args.index(flag) + 1] = value[0]
        else:
            args += [flag, *value]
    return args


def train_cli(args, cut=None, env=None):
    """train.py with `args`, or cut_train.py's cut = [HOW, WHERE, STEP] of it: the finished process."""
    command = [sys.executable] + (["tests/helpers/cut_train.py"] + cut + ["--"] if cut else ["train.py"])
    return subprocess.run(command + args, cwd=REPO, capture_output=True, text=True, env=env)


def resume(args):
    """train.py --resume with `args`, in this process (a process of its own costs seconds of imports): what
    it printed."""
    import train
    from infra.config import parse_args
    cfg, options = parse_args(args + ["--resume"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train.train(cfg, progress=False, **options)
    return printed.getvalue()


def log_without_seconds(out):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def resume_state(out):
    """last.pt as plain values, every tensor as its dtype, shape and bytes, without the seconds of its log
    (the one thing two runs may not share). Not its own bytes: pickle writes a string once per object, and a
    resumed run's keys are other string objects with the same text."""
    def plain(x):
        if isinstance(x, torch.Tensor):
            return str(x.dtype), tuple(x.shape), bytes(x.contiguous().reshape(-1).view(torch.uint8).numpy())
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items() if k != "seconds"}
        return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x
    return plain(torch.load(out / "last.pt", weights_only=True))


def best_files(out):
    """best/'s files, train_config.json without its output_dir (the one setting that names the folder)."""
    best = out / "best"
    files = {str(p.relative_to(best)): p.read_bytes() for p in best.rglob("*") if p.is_file()}
    config = json.loads(files.pop("train_config.json"))
    return {**files, "train_config.json": {k: v for k, v in config.items() if k != "output_dir"}}


def snapshot(folder):
    """Every file under folder and its bytes, .lock included: what a refused command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_run(out, reference):
    """log.jsonl (its seconds aside), best/ and last.pt as the reference's, and no .tmp left by a cut save."""
    assert log_without_seconds(out) == log_without_seconds(reference)
    assert best_files(out) == best_files(reference)
    assert resume_state(out) == resume_state(reference)
    assert sorted({*out.rglob("*.tmp"), *(out / "best").rglob("*.tmp")}) == []  # (best/ may be a link)


def kill_and_resume(common, tmp_path, step):
    """A run with the flags `common`, killed (kill -9) in the save of `step` once last.pt is in place (its
    log.jsonl not yet) and resumed, ends as the same run uninterrupted."""
    whole = train_cli(common + ["--output-dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = train_cli(common + ["--output-dir", str(tmp_path / "cut")], ["kill", "after last.pt", str(step)])
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert f"after step {step}" in resume(common + ["--output-dir", str(tmp_path / "cut")])
    assert_same_run(tmp_path / "cut", tmp_path / "whole")
