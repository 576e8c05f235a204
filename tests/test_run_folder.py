"""No run ever destroys another's results (run_folder.py): a refused command changes nothing, not even .lock;
a second process is refused at once, also one that finished a run while a new one waited for the lock;
--overwrite starts over, and cut anywhere it leaves a folder that the same command or --resume takes up; best/
may link to another disk; a full disk at any file of a save keeps the previous save whole; a moved folder
resumes and the data is compared by content; damaged files are one line naming them; no POSIX-only module is
needed to start. The cuts that --resume undoes: test_resume.py."""
import errno
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import data
from formats import files
import train
from bert import BertModel
from infra.config import parse_args
from helpers.runs import (REPO, HalfWritten, assert_same_run, log_without_seconds, snapshot, train_cli,
                          with_flags)
from infra.run_folder import RunFolder
from formats.tokenizer import load_tokenizer


def refusal(argv):
    """train.py's main with argv, in this process: the one line it must end with."""
    with pytest.raises(SystemExit) as ended:
        train.main(argv)
    return str(ended.value.code)


def in_process(run):
    """train.train of a command line, in this process; an error or Ctrl-C it ends with is returned, and
    dropped with its traceback, so that the lock of its run folder is free again."""
    cfg, options = parse_args(run)
    try:
        train.train(cfg, **options, progress=False)
    except (OSError, ValueError, KeyboardInterrupt) as e:
        e.__context__ = None  # (the frames of its traceback, and of its context's, hold the lock)
        return e.with_traceback(None)
    finally:
        gc.collect()


def start(args, out, resume=False, overwrite=False, train_file=None, dev_file=None):
    """RunFolder(...).start() as train.py calls it, on the tiny model: (run, model, optimizer, schedule)."""
    cfg, _ = parse_args(args + ["--output-dir", str(out)] + (["--train-file", str(train_file)] if train_file
                                                               else []))
    train_path, examples, _ = data.read_training_file(cfg.train_file, cfg.data_dir, announce=False)
    dev_file = dev_file or data.load_sts("STSBenchmark", cfg.data_dir, ["dev"])["dev"].source
    model = BertModel.from_pretrained(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters())
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    run = RunFolder(cfg, resume, overwrite)
    try:
        run.start(model, optimizer, schedule, (train_path, len(examples)), dev_file)
    except BaseException:
        getattr(run, "lock", None) and run.lock.release()  # as the end of a refused process would
        raise
    return run, model, optimizer, schedule


def copy_run(finished_run, folder):
    """A copy of the reference run (conftest.finished_run), to change."""
    shutil.copytree(finished_run[0], folder, symlinks=True)
    return folder


# --- Refused commands change nothing ------------------------------------------------------------------------

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
    ("--max-steps", "1"): "holds a run",  # a good command, but a new run into a finished run's folder
}


def test_a_bad_command_fails_at_once_and_changes_nothing(finished_run, tmp_path):
    out, args = finished_run
    before = snapshot(out)
    for flags, says in BAD.items():
        message = refusal(with_flags(args, "--output-dir", str(out), *flags))
        assert message.startswith("error: ") and "\n" not in message, message
        assert says in message or "holds a run" in message  # (either is right in a folder with a run)
        if flags != ("--max-steps", "1"):  # into a new folder: not even the folder is made
            message = refusal(with_flags(args, "--output-dir", str(tmp_path / "new"), *flags))
            assert says in message and "\n" not in message and not (tmp_path / "new").exists(), message
    assert snapshot(out) == before  # .lock included

    cli = train_cli(with_flags(args, "--output-dir", str(out), "--max-steps", "1"))  # the same, as a command
    message = cli.stderr.strip()
    assert cli.returncode == 1 and message.startswith("error: ") and "\n" not in message, cli.stderr[-2000:]
    assert f"{out} holds a run (run.json, last.pt, log.jsonl, test_scores.json, best)" in message
    assert "--resume" in message and "--overwrite" in message
    assert snapshot(out) == before


def test_an_unreachable_hub_id_is_one_line(tmp_path, data_root):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = train_cli(["--model", "someone/no-such-model", "--output-dir", str(tmp_path / "run"), "--data-dir",
                     str(data_root)], env=env)
    message = run.stderr.strip()
    assert run.returncode == 1 and "\n" not in message and "could not be downloaded" in message
    assert not (tmp_path / "run").exists()


def test_a_second_process_is_refused_at_once_and_the_first_goes_on(finished_run, tmp_path):
    reference, args = finished_run
    out, go = tmp_path / "run", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "tests/helpers/cut_train.py", f"pause:{go}", "step", "2", "--"]
                             + args + ["--output-dir", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "log.jsonl").exists():  # its step-0 save done: it holds the lock, waiting at step 2
            assert first.poll() is None, first.stderr.read()[-2000:]
            time.sleep(0.1)
        before = snapshot(out)
        second = train_cli(args + ["--output-dir", str(out), "--resume"])  # as a command
        assert second.returncode == 1 and second.stderr.strip() == (
            f"error: {out} is in use by another process: wait for it to end, or choose another --output-dir")
        with pytest.raises(OSError, match=f"^{out} is in use by another process"):
            start(args, out, overwrite=True)  # the same refusal, before any change
        with pytest.raises(FileExistsError, match=f"^{out} holds a run"):  # a new run: refused before that
            start(args, out)
        assert snapshot(out) == before  # .lock included
    finally:
        go.touch()
        first.wait()
    assert first.returncode == 0, first.stderr.read()[-2000:]
    assert_same_run(out, reference)  # as if it had been alone


def test_a_run_made_while_a_new_one_waits_for_the_lock_is_never_written_over(finished_run, tmp_path,
                                                                             monkeypatch):
    """The new run found no folder at its check; another process makes and finishes a run there before
    the new one holds the lock: the new one checks again, under the lock, and is refused."""
    reference, args = finished_run
    out, mkdir = tmp_path / "run", Path.mkdir

    def another_run_meanwhile(self, *more, **options):
        if self == out and not out.exists():
            shutil.copytree(reference, out)
        return mkdir(self, *more, **options)
    monkeypatch.setattr(Path, "mkdir", another_run_meanwhile)
    error = in_process(args + ["--output-dir", str(out)])
    assert isinstance(error, FileExistsError) and f"{out} holds a run" in str(error), error
    assert snapshot(out) == snapshot(reference)


# --- --overwrite, and best/ on another disk --------------------------------------------------------------

def test_overwrite_starts_over_and_ctrl_c_in_its_deletion_leaves_what_resume_takes_up(finished_run, tmp_path):
    reference, args = finished_run
    out = copy_run(finished_run, tmp_path / "run")
    new = with_flags(args, "--output-dir", str(out), "--max-steps", "2", "--eval-steps", "1")
    cut = train_cli(new + ["--overwrite"], ["ctrl-c", "deleting best/config.json", "0"])
    assert cut.returncode == 130 and "Traceback" not in cut.stderr, cut.stderr[-2000:]
    assert cut.stderr.strip().splitlines()[-1] == ("interrupted: the same command starts over; --resume in "
                                                   "place of --overwrite keeps its saves")
    assert not (out / "last.pt").exists() and not (out / "log.jsonl").exists()  # the old run's are gone
    assert not (out / "test_scores.json").exists() and not (out / "best" / "model.safetensors").exists()
    assert json.loads((out / "run.json").read_text())["config"]["max_steps"] == 2  # the new run's
    resumed = train_cli(new + ["--resume"])
    assert resumed.returncode == 0 and "resuming" not in resumed.stdout, resumed.stderr[-2000:]
    assert [r["step"] for r in log_without_seconds(out)] == [0, 1, 2]
    assert not (out / "test_scores.json").exists()  # it described the old model
    assert json.loads((out / "best" / "train_config.json").read_text())["max_steps"] == 2
    BertModel.from_pretrained(str(out / "best")), load_tokenizer(str(out / "best"))  # whole


def test_a_cut_anywhere_in_the_deletion_of_a_start_over_leaves_a_folder_both_commands_take_up(
        finished_run, tmp_path, monkeypatch):
    """--overwrite deletes last.pt first, writes the new run.json, then deletes the rest, best/'s weights
    first: cut after any of these, the old run is whole or cannot be resumed, a half-deleted best/ never
    loads, and the same command or --resume in its place leaves a new run's folder."""
    reference, args = finished_run
    new, whole = with_flags(args, "--max-steps", "2"), [p for p in (reference / "best").rglob("*") if p.is_file()]
    cut = {"at": 0, "done": 0}
    unlink, rmdir, replace = Path.unlink, Path.rmdir, os.replace

    def counted(operation):
        def cutting(*arguments, **options):
            operation(*arguments, **options)
            cut["done"] += 1
            if cut["done"] == cut["at"]:
                raise KeyboardInterrupt
        return cutting
    for at in range(1, 100):
        out = copy_run(finished_run, tmp_path / f"cut-{at}")
        cut.update(at=at, done=0)
        with monkeypatch.context() as patch:
            for owner, name, operation in ((Path, "unlink", unlink), (Path, "rmdir", rmdir),
                                           (os, "replace", replace)):
                patch.setattr(owner, name, counted(operation))
            try:
                start(new, out, overwrite=True)
                break  # no cut left: every operation was done
            except KeyboardInterrupt:
                pass
        assert not (out / "last.pt").exists()  # the first deletion: the old run is never resumed
        best = [p.name for p in (out / "best").rglob("*") if p.is_file()]
        assert "model.safetensors" not in best or len(best) == len(whole)  # a half-deleted best/ never loads
        for command in ("overwrite", "resume"):  # the same command, or --resume with its flags
            again = copy_run((out, None), tmp_path / f"{command}-{at}")
            start(new, again, **{command: True})  # (its lock goes with it)
            assert sorted(snapshot(again)) == [".lock", "run.json"]
            assert json.loads((again / "run.json").read_text())["config"]["max_steps"] == 2
    assert at > 10 and sorted(snapshot(out)) == [".lock", "run.json"]


def test_best_may_be_a_link_to_another_disk(finished_run, tmp_path, monkeypatch):
    """Saves, a cut and --resume, and --overwrite write through the link: it stays a link to the same
    folder."""
    reference, args = finished_run
    out, disk = tmp_path / "run", tmp_path / "other-disk" / "best"
    disk.mkdir(parents=True)
    out.mkdir()
    (out / "best").symlink_to(disk, target_is_directory=True)
    replace = os.replace

    def cut_in_the_save_of_step_8(source, destination):  # Ctrl-C: best/ and last.pt new, log.jsonl not
        replace(source, destination)
        if Path(destination).name == "last.pt" and torch.load(destination, weights_only=True)["step"] == 8:
            raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", cut_in_the_save_of_step_8)
        assert isinstance(in_process(args + ["--output-dir", str(out)]), KeyboardInterrupt)
    assert in_process(args + ["--output-dir", str(out), "--resume"]) is None
    assert (out / "best").readlink() == disk and (disk / "model.safetensors").exists()
    assert_same_run(out, reference)
    assert in_process(with_flags(args, "--output-dir", str(out), "--overwrite", "--max-steps", "2")) is None
    assert (out / "best").readlink() == disk and [r["step"] for r in log_without_seconds(out)] == [0, 2]
    assert json.loads((disk / "train_config.json").read_text())["max_steps"] == 2


# --- A full disk ------------------------------------------------------------------------------------------

def test_a_full_disk_at_any_file_of_a_save_is_one_line_and_keeps_the_previous_save(finished_run, tmp_path,
                                                                                  monkeypatch):
    reference, args = finished_run
    out = copy_run(finished_run, tmp_path / "run")
    run, model, optimizer, schedule = start(args, out, resume=True)
    tokenizer = load_tokenizer(run.cfg.model)
    saved = snapshot(out)
    names = sorted(str(p.relative_to(out)) for p in (out / "best").rglob("*") if p.is_file())
    full = {}

    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device")

    def opened(path, mode):  # write_files's open of <file>.tmp
        return HalfWritten(open(path, mode), disk_full) if Path(path) == full["tmp"] else open(path, mode)
    monkeypatch.setattr(files, "open", opened, raising=False)
    for name in names + ["last.pt", "log.jsonl"]:  # a save that writes best/ too: it is the best so far
        full["tmp"] = Path(os.path.realpath(out / name)).with_name(Path(name).name + ".tmp")
        with pytest.raises(OSError) as error:
            run.save(16, {"loss": 0.5}, {"stsb_dev": 100.0}, 0, model, tokenizer, optimizer, schedule)
        assert str(error.value) == (f"{os.path.realpath(out / name)}: no space left on the device; the "
                                    f"previous save is whole: free space, then continue with --resume")
        assert snapshot(out) == saved  # not a byte changed, no .tmp left
    assert len(names) >= 10 and run.state["step"] == 12


def test_a_real_full_disk_keeps_the_previous_save_and_resume_goes_on(finished_run, tmp_path):
    reference, args = finished_run
    size = lambda folder: sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    one_save = size(reference / "best") + (reference / "last.pt").stat().st_size
    disk, out = tmp_path / "disk", tmp_path / "disk" / "run"
    disk.mkdir()
    limit = one_save + (reference / "last.pt").stat().st_size // 2  # no second save beside the first
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={limit}", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a small tmpfs is not permitted here (the injected full disks still run)")
    try:
        error = in_process(args + ["--output-dir", str(out)])
        assert isinstance(error, OSError) and str(error).startswith(f"{out}/"), error
        assert "no space left on the device; the previous save is whole" in str(error)
        kept = [r["step"] for r in log_without_seconds(out)]  # AdamW's state appears at step 1: a later save
        assert kept == [0, 4, 8][:len(kept)]  # the previous save, whole (the log up to last.pt's step)
        assert torch.load(out / "last.pt", weights_only=True)["step"] == kept[-1]
        assert list(out.rglob("*.tmp")) == []  # nothing keeps the disk full
        subprocess.run(["mount", "-o", f"remount,size={4 * one_save}", str(disk)], check=True)  # space freed
        assert in_process(args + ["--output-dir", str(out), "--resume"]) is None
        assert_same_run(out, reference)
    finally:
        subprocess.run(["umount", "--lazy", str(disk)])


# --- --resume: the same settings and data, wherever they are ----------------------------------------------

def test_resume_takes_the_folder_anywhere_and_the_data_anywhere_but_not_other_data(finished_run, data_root,
                                                                                   tmp_path):
    reference, args = finished_run
    out = copy_run(finished_run, tmp_path / "moved" / "run")  # another folder, the same run
    train_file = tmp_path / "elsewhere" / "train.txt"  # the same bytes at another path
    train_file.parent.mkdir()
    shutil.copy(data_root / "wiki" / "wiki1m_head.txt", train_file)
    run, *_ = start(args, os.path.relpath(out), resume=True, train_file=train_file)  # a relative path
    assert run.state["step"] == 12
    run.lock.release()

    lines = train_file.read_text(encoding="utf-8").splitlines(keepends=True)
    train_file.write_text("".join(lines[:-1]), encoding="utf-8")  # one example fewer
    with pytest.raises(ValueError) as error:
        start(args, out, resume=True, train_file=train_file)
    message = str(error.value)
    assert message.startswith(f"{train_file.resolve()}: not the train file the run in {out} started with ")
    assert f"examples {len(lines)} -> {len(lines) - 1}" in message and "\n" not in message
    dev = tmp_path / "sts-dev.csv"  # another STS-B dev: one pair fewer
    stsb = data.load_sts("STSBenchmark", str(data_root), ["dev"])["dev"].source
    dev.write_text("".join(Path(stsb).read_text(encoding="utf-8").splitlines(keepends=True)[:-1]),
                   encoding="utf-8")
    with pytest.raises(ValueError, match=f"^{dev.resolve()}: not the stsb dev the run in "):
        start(args, out, resume=True, dev_file=dev)
    assert snapshot(out) == snapshot(reference)  # refused: nothing changed


def test_resume_with_other_settings_is_one_line_and_with_nothing_saved_starts(finished_run, tmp_path):
    reference, args = finished_run
    with pytest.raises(ValueError) as error:
        RunFolder(parse_args(args + ["--output-dir", str(reference), "--lr", "1e-4", "--dropout", "0.2"])[0],
                  resume=True)
    message = str(error.value)
    assert message == (f"{reference} was trained with another configuration; --resume needs the same "
                       f"(dropout 0.1 -> 0.2; lr 3e-05 -> 0.0001)")
    run, *_ = start(args, tmp_path / "new", resume=True)  # nothing saved there: the run starts
    assert run.state["step"] == 0 and sorted(snapshot(tmp_path / "new")) == [".lock", "run.json"]


# --- Damaged files, and a start without POSIX-only modules --------------------------------------------------

def damage(folder, case):
    """One file of a checkpoint (or of a run folder) damaged as a disk, a copy or a hand may damage it;
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
    elif case == "truncated last.pt":
        path = folder / "last.pt"
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "bad run.json":
        path = folder / "run.json"
        path.write_text(path.read_text()[:50])
    elif case == "run.json without its data":
        path = folder / "run.json"
        path.write_text(json.dumps({"config": json.loads(path.read_text())["config"]}))
    return path


CHECKPOINT_CASES = ["truncated tokenizer.json", "empty vocab.txt", "garbled vocab.txt",
                    "bad tokenizer_config.json", "config.json num_attention_heads=0",
                    "config.json vocab_size=-1", "NaN weights"]


@pytest.mark.parametrize("case", CHECKPOINT_CASES + ["truncated last.pt", "bad run.json",
                                                     "run.json without its data"])
def test_a_damaged_file_is_one_line_naming_it(case, tiny_checkpoint, finished_run, tmp_path):
    if case in CHECKPOINT_CASES:
        folder = shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint")
        path = damage(folder, case)
        load = lambda: (load_tokenizer(str(folder)), BertModel.from_pretrained(str(folder)))
    else:  # what --resume reads
        folder = copy_run(finished_run, tmp_path / "run")
        path = damage(folder, case)
        load = lambda: start(finished_run[1], folder, resume=True)
    with pytest.raises((ValueError, OSError)) as error:
        load()
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert "weights_only" not in message  # never the advice to unpickle


def test_train_starts_where_fcntl_is_missing(tmp_path):
    """As on Windows: train.py imports, and the run folder's lock works, without fcntl."""
    run = subprocess.run([sys.executable, "tests/helpers/without_fcntl.py", str(tmp_path / ".lock")],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "locked; a second lock refused\n", run.stderr[-2000:]
