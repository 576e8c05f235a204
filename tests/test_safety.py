"""No run ever destroys another's results: bad flags fail at once and touch nothing, a folder that holds a
run is never written over by accident nor by two processes at once (Ctrl-C, kill -9 and a full disk:
tests/test_resume.py)."""
import fcntl
import json
import os
import subprocess
import sys
import time

import pytest

from data import REPO


def train_cli(args, code=None, env=None):
    command = [sys.executable] + (["-c", code] if code else ["train.py"]) + args
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)


def log_without_seconds(out):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def snapshot(folder):  # .lock aside: each process that takes the folder's lock writes its pid there
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(finished_run):
    """A finished run (with a test_scores.json) and the flags that made it (conftest.py)."""
    return finished_run


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
        run = train_cli(args + ["--output-dir", str(folder)] + list(flags))
        message = run.stderr.strip()
        if folder != out and flags == ("--max-steps", "1"):
            assert run.returncode == 0  # a good command, into a new folder
            continue
        assert (run.returncode == 1 and message.startswith("error:")
                and "\n" not in message), run.stderr[-2000:]
        assert BAD[flags] in message or (folder == out and "holds a run" in message)  # either is right there
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
    run = train_cli(["--model", "someone/no-such-model", "--output-dir", str(tmp_path / "run"), "--data-dir",
                     str(data_root)], env=env)
    message = run.stderr.strip()
    assert run.returncode == 1 and "\n" not in message and "could not be downloaded" in message
    assert not (tmp_path / "run").exists()


# train.py that holds the folder's lock and waits at step 2 until the file named by argv[1] exists.
PAUSED = """
import os, pathlib, runpy, sys, time
go = pathlib.Path(sys.argv[1])
sys.argv = ["train.py"] + sys.argv[2:]
from infra import guard
skip = guard.NonFiniteGuard.skip_if_nonfinite
def paused(self, loss, grad_norm, step):
    while step == 2 and not go.exists():
        time.sleep(0.1)
    skip(self, loss, grad_norm, step)
guard.NonFiniteGuard.skip_if_nonfinite = paused
runpy.run_path("train.py", run_name="__main__")
"""


def test_a_second_process_on_a_run_folder_is_refused_and_the_first_goes_on(finished, tmp_path):
    reference, args = finished
    out, go = tmp_path / "run", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", PAUSED, str(go)] + args + ["--output-dir", str(out)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "log.jsonl").exists():  # the lock is taken before anything is written
            assert first.poll() is None, first.stderr.read()[-2000:]
            time.sleep(0.2)
        assert (out / ".lock").read_text().strip() == str(first.pid)
        for mode in ([], ["--resume"], ["--overwrite"]):  # a new run, a resume, a start over: all refused
            second = train_cli(args + ["--output-dir", str(out)] + mode)
            message = second.stderr.strip()
            assert second.returncode == 1 and "\n" not in message, second.stderr[-2000:]
            assert f"in use by process {first.pid}" in message
    finally:
        go.touch()
        first.wait()
    assert first.returncode == 0, first.stderr.read()[-2000:]
    assert log_without_seconds(out) == log_without_seconds(reference)  # as if it had been alone
    for folder in ("best", "last"):
        assert (out / folder / "model.safetensors").read_bytes() == \
            (reference / folder / "model.safetensors").read_bytes()


def test_the_lock_names_its_holder_and_is_freed_with_it(finished, tmp_path):
    from infra.config import TrainConfig
    from infra.run_folder import RunFolder
    out, _ = finished
    cfg = TrainConfig(output_dir=str(out), max_steps=12, eval_steps=4, batch_size=8)
    with open(out / ".lock", "a+") as held:  # another process's lock (flock: per open file, even here)
        fcntl.flock(held, fcntl.LOCK_EX)
        held.truncate(0)
        held.write("4242\n")
        held.flush()
        with pytest.raises(OSError, match="in use by process 4242"):
            RunFolder(cfg, overwrite=True)  # (checks only: nothing is deleted before start())
    RunFolder(cfg, overwrite=True)  # released: taken again


def damage(folder, case):
    """One file of a checkpoint (or of a run's last/) damaged as a disk, a copy or a hand may damage it;
    returns the file."""
    if case == "truncated tokenizer.json":
        path = folder / "tokenizer.json"
        path.write_bytes(path.read_bytes()[:5000])
    elif case in ("empty vocab.txt", "garbled vocab.txt"):
        (folder / "tokenizer.json").unlink()  # vocab.txt is read when there is no tokenizer.json
        path = folder / "vocab.txt"
        path.write_bytes(b"" if case.startswith("empty") else bytes(range(256)) * 40)
    elif case == "bad tokenizer_config.json":
        path = folder / "tokenizer_config.json"
        path.write_text('{"model_max_length": 512,')
    elif case.startswith("config.json"):
        path, (key, value) = folder / "config.json", case.split(" ", 1)[1].split("=")
        path.write_text(json.dumps({**json.loads(path.read_text()), key: int(value)}))
    elif case == "NaN weights":
        from formats.checkpoint import read_safetensors, write_safetensors
        path = folder / "model.safetensors"
        weights = read_safetensors(str(path))
        weights["encoder.layer.1.output.dense.weight"][0, 0] = float("nan")
        write_safetensors(weights, str(path))
    elif case == "truncated last/optimizer.pt":
        path = folder / "last" / "optimizer.pt"
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "bad last/state.json":
        path = folder / "last" / "state.json"
        path.write_text(path.read_text()[:50])
    return path


CHECKPOINT_CASES = ["truncated tokenizer.json", "empty vocab.txt", "garbled vocab.txt",
                    "bad tokenizer_config.json", "config.json num_attention_heads=0",
                    "config.json vocab_size=-1", "NaN weights"]


@pytest.mark.parametrize("case", CHECKPOINT_CASES + ["truncated last/optimizer.pt", "bad last/state.json"])
def test_a_damaged_file_is_one_line_naming_it(case, tiny_checkpoint, finished, tmp_path):
    import shutil
    import torch
    from bert import BertModel
    from infra.config import parse_args
    from infra.run_folder import RunFolder
    from formats.tokenizer import load_tokenizer
    if case in CHECKPOINT_CASES:
        folder = tmp_path / "checkpoint"
        shutil.copytree(tiny_checkpoint, folder)
        path = damage(folder, case)
        load = lambda: (load_tokenizer(str(folder)), BertModel.from_pretrained(str(folder)))
    else:  # what --resume reads
        out, args = finished
        folder = tmp_path / "run"
        shutil.copytree(out, folder)
        for name in ("run.json", "last/state.json"):  # the copy's own folder (another one is another run)
            saved = json.loads((folder / name).read_text())
            saved["config"]["output_dir"] = str(folder)
            (folder / name).write_text(json.dumps(saved))
        path = damage(folder, case)
        cfg, _ = parse_args(args + ["--output-dir", str(folder)])
        model = BertModel.from_pretrained(tiny_checkpoint)
        optimizer = torch.optim.AdamW(model.parameters())
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        pinned = json.loads((folder / "run.json").read_text())["data"]
        load = lambda: RunFolder(cfg, resume=True).start(
            model, optimizer, schedule, (pinned["train_file"]["path"], pinned["train_file"]["examples"]),
            pinned["stsb_dev"]["path"])
    with pytest.raises((ValueError, OSError)) as error:
        load()
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert "weights_only" not in message  # never the advice to unpickle
