"""No run ever destroys another's results: bad flags fail at once and touch nothing, a folder that holds a
run is never written over by accident, and Ctrl-C at any moment exits 130 and loses nothing."""
import json
import os
import subprocess
import sys
import time

import pytest

from data import REPO

COMMON = ["--max-steps", "12", "--eval-steps", "4", "--batch-size", "8", "--no-test"]

# train.py run as `python train.py`, after a patch that sends this process SIGINT (Ctrl-C) at one moment.
INTERRUPT_AT = """
import os, runpy, signal, sys
moment = sys.argv[1]
sys.argv = ["train.py"] + sys.argv[2:]
ctrl_c = lambda: os.kill(os.getpid(), signal.SIGINT)
if moment == "step-0 evaluation":
    import eval_sts
    dev_metrics = eval_sts.dev_metrics
    def interrupted(*args):
        ctrl_c()
        return dev_metrics(*args)
    eval_sts.dev_metrics = interrupted
elif moment == "step 2":  # before the first evaluation after step 0
    import guard
    skip = guard.NonFiniteGuard.skip_if_nonfinite
    def interrupted(self, loss, grad_norm, step):
        skip(self, loss, grad_norm, step)
        if step == 2:
            ctrl_c()
    guard.NonFiniteGuard.skip_if_nonfinite = interrupted
elif moment == "saving step 8":  # the weights of last/ written, the rest not yet
    import run_folder
    save_state = run_folder.save_state
    def interrupted(folder, model, optimizer, schedule, state):
        if state["step"] == 8:
            run_folder.write_safetensors(model.state_dict(), str(folder / "model.safetensors"))
            ctrl_c()
        save_state(folder, model, optimizer, schedule, state)
    run_folder.save_state = interrupted
runpy.run_path("train.py", run_name="__main__")
"""


def train_cli(args, code=None, moment=None, env=None):
    command = [sys.executable] + (["-c", code, moment] if code else ["train.py"]) + args
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)


def log_without_seconds(out):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tiny_checkpoint, data_root, tmp_path_factory):
    """A finished run (with a test_scores.json) and the flags that made it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    args = COMMON + ["--model", tiny_checkpoint, "--data-dir", str(data_root)]
    run = train_cli(args + ["--output-dir", str(out)])
    assert run.returncode == 0, run.stderr[-2000:]
    (out / "test_scores.json").write_text('{"scores": {"Avg": 1.0}}')  # as a run with the test would leave
    return out, args


@pytest.mark.parametrize("moment", ["step-0 evaluation", "step 2", "saving step 8"])
def test_ctrl_c_exits_130_and_resume_gives_the_uninterrupted_run(moment, finished, tmp_path):
    whole, args = finished
    args = args + ["--output-dir", str(tmp_path / "cut")]
    cut = train_cli(args, INTERRUPT_AT, moment)
    assert cut.returncode == 130, cut.stderr[-2000:]
    assert "interrupted" in cut.stderr and "--resume" in cut.stderr and "Traceback" not in cut.stderr
    resumed = train_cli(args + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert log_without_seconds(tmp_path / "cut") == log_without_seconds(whole)
    assert [r["step"] for r in log_without_seconds(whole)] == [0, 4, 8, 12]
    for folder in ("best", "last"):
        assert (tmp_path / "cut" / folder / "model.safetensors").read_bytes() == \
            (whole / folder / "model.safetensors").read_bytes()


BAD = {  # flags -> what the one-line error must say
    ("--dropout", "1.5"): "--dropout 1.5: expected a probability",
    ("--batch-size", "0"): "--batch-size 0",
    ("--max-steps", "-1"): "--max-steps -1",
    ("--max-steps", "0"): "--max-steps 0",
    ("--lr", "0"): "--lr 0",
    ("--eval-steps", "0"): "--eval-steps 0",
    ("--temp", "-1"): "--temp -1",
    ("--model", "runs/quik/best"): "runs/quik/best: model folder not found",
    ("--train-file", "nope/missing.txt"): "missing.txt",
    ("--max-steps", "1"): "holds a run",  # a new run into a finished run's folder, without --resume
}


@pytest.mark.parametrize("flags", BAD, ids=lambda f: " ".join(f))
def test_a_bad_command_fails_at_once_and_changes_nothing(flags, finished, tmp_path):
    out, args = finished
    before = snapshot(out)
    for folder in (out, tmp_path / "new"):  # into the finished run's folder, and into a new one
        start = time.perf_counter()
        run = train_cli(args + ["--output-dir", str(folder)] + list(flags))
        seconds = time.perf_counter() - start
        message = run.stderr.strip()
        if folder != out and flags == ("--max-steps", "1"):
            assert run.returncode == 0  # a good command, into a new folder
            continue
        assert (run.returncode == 1 and message.startswith("error:")
                and "\n" not in message), run.stderr[-2000:]
        assert BAD[flags] in message or (folder == out and "holds a run" in message)  # either is right there
        assert seconds < 5 + (3 if flags[0] == "--train-file" else 0)
    assert snapshot(out) == before
    assert not (tmp_path / "new").exists() or flags == ("--max-steps", "1")


def test_overwrite_starts_over_and_takes_the_old_results_with_it(finished, tmp_path):
    out, args = finished
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
    args = args + ["--output-dir", str(copy)]
    run = train_cli(args + ["--max-steps", "2", "--eval-steps", "1", "--overwrite"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert [r["step"] for r in log_without_seconds(copy)] == [0, 1, 2]
    assert not (copy / "test_scores.json").exists()  # it described the old model
    assert json.loads((copy / "run.json").read_text())["config"]["max_steps"] == 2


def test_an_unreachable_hub_id_is_one_line(tmp_path, data_root):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    run = train_cli(["--model", "someone/no-such-model", "--output-dir", str(tmp_path / "run"), "--data-dir",
                     str(data_root)], env=env)
    message = run.stderr.strip()
    assert run.returncode == 1 and "\n" not in message and "could not be downloaded" in message
    assert time.perf_counter() - start < 5 and not (tmp_path / "run").exists()
