"""Trustworthy runs: resume after kill -9 bit for bit, checkpoints never half-written, the NaN/inf guard,
and seed sweeps whose statistics are recomputable from their runs."""
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys

import pytest
import torch

from infra import run_folder
import simcse
import ablate
import train
from bert import BertConfig, BertModel
from formats.checkpoint import read_safetensors
from data import REPO

ARGS = ["--max-steps", "12", "--eval-steps", "4", "--batch-size", "8", "--no-test"]

# train.py's main() in a process cut at one moment of its run: `how` is ctrl-c (SIGINT), sigterm, kill
# (SIGKILL, as kill -9) or "full disk" (a write that fails as on a full disk); `where` names the moment.
INTERRUPT = """
import errno, json, os, pathlib, runpy, shutil, signal, sys
how, where, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.argv = ["train.py"] + sys.argv[4:]
from infra import guard
from infra import run_folder
stop = lambda: os.kill(os.getpid(), {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM}.get(how, 9))
saving = lambda folder: json.loads((folder.parent / "last.tmp" / "state.json").read_text())["step"]
if where == "step-0 evaluation":
    import eval_sts
    dev_metrics = eval_sts.dev_metrics
    def cut(*args):
        stop()
        return dev_metrics(*args)
    eval_sts.dev_metrics = cut
elif where == "step":  # before the first evaluation after step 0
    skip = guard.NonFiniteGuard.skip_if_nonfinite
    def cut(self, loss, grad_norm, s):
        skip(self, loss, grad_norm, s)
        if s == step:
            stop()
    guard.NonFiniteGuard.skip_if_nonfinite = cut
elif where == "writing last":  # the weights of last.tmp/ written, the rest not yet
    save_state = run_folder.save_state
    def cut(folder, model, optimizer, schedule, state):
        if state["step"] == step:
            run_folder.write_safetensors(model.state_dict(), str(folder / "model.safetensors"))
            stop()
        save_state(folder, model, optimizer, schedule, state)
    run_folder.save_state = cut
elif how == "full disk":  # the weights (an OSError) or optimizer.pt (torch's zip writer) fail half written
    save_state = run_folder.save_state
    def full(path):
        open(path, "wb").write(b"part")
        if str(path).endswith(".pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed "
                               "writing file data/0: file write failed")
        raise OSError(errno.ENOSPC, "No space left on device")
    def cut(folder, model, optimizer, schedule, state):
        if state["step"] == step and where == "model.safetensors":
            run_folder.write_safetensors = lambda tensors, path: full(path + ".tmp")
        elif state["step"] == step:
            run_folder.torch.save = lambda obj, path: full(path)
        save_state(folder, model, optimizer, schedule, state)
    run_folder.save_state = cut
else:  # a kill in the swap of best/ or last/ ("<folder>: <point>") at the save of `step`
    name, point = where.split(": ")
    swap, rename, rmtree = run_folder.swap, pathlib.Path.rename, shutil.rmtree
    def renamed(self, target):
        moved = rename(self, target)
        if pathlib.Path(target).name == (name + ".old" if point == "between the renames" else name):
            stop()
        return moved
    def half_removed(path, *args, **kwargs):
        if pathlib.Path(path).name == name + ".old":
            next(p for p in pathlib.Path(path).rglob("*") if p.is_file()).unlink()
            stop()
        return rmtree(path, *args, **kwargs)
    def cut(folder):
        if folder.name != name or saving(folder) != step:
            return swap(folder)
        if point == "before the renames":
            stop()
        elif point in ("between the renames", "after the renames"):
            pathlib.Path.rename = renamed
        elif point == "removing the old folder":
            shutil.rmtree = half_removed
        swap(folder)
        stop()  # "after the save": last/ swapped in, log.jsonl not yet
    run_folder.swap = cut
runpy.run_path("train.py", run_name="__main__")
"""


def train_cli(args, code=None, env=None):
    command = [sys.executable] + (["-c", code] if code else ["train.py"]) + args
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)


def log_without_seconds(out):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def kill_and_resume(common, tmp_path, step):
    """A run with the flags `common`, killed (kill -9) once last/ holds `step` and resumed, ends as the same
    run uninterrupted: log.jsonl, best/ and last/ byte for byte (the other cuts: CUTS below)."""
    whole = train_cli(common + ["--output-dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    cut = ["kill", "last: after the save", str(step)]
    killed = train_cli(cut + common + ["--output-dir", str(tmp_path / "cut")], code=INTERRUPT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = train_cli(common + ["--output-dir", str(tmp_path / "cut"), "--resume"])
    assert resumed.returncode == 0 and f"after step {step}" in resumed.stdout, resumed.stderr[-2000:]
    assert log_without_seconds(tmp_path / "cut") == log_without_seconds(tmp_path / "whole")
    for folder in ("best", "last"):
        assert (tmp_path / "cut" / folder / "model.safetensors").read_bytes() == \
            (tmp_path / "whole" / folder / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def whole(finished_run):
    """The uninterrupted run every interrupted one must end as, and the flags that made it (conftest.py)."""
    return finished_run


def assert_same_run(out, whole):
    """best/, last/ and log.jsonl as the uninterrupted run's, and no leftover of a save."""
    assert log_without_seconds(out) == log_without_seconds(whole)
    for folder in ("best", "last"):
        assert (out / folder / "model.safetensors").read_bytes() == \
            (whole / folder / "model.safetensors").read_bytes()
    assert json.loads((out / "last" / "state.json").read_text())["step"] == 12
    assert sorted(p.name for p in out.iterdir() if p.name.endswith((".tmp", ".old"))) == []


BEST = None  # the step of the reference run's last new best/ (after step 0), found from its log
CUTS = [  # (how, where, step of the save or step cut, what the cut leaves, --resume goes on after step)
    ("ctrl-c", "step-0 evaluation", 0, [], None),
    ("ctrl-c", "step", 2, [], 0),
    ("sigterm", "step", 2, [], 0),  # `kill`: as Ctrl-C, but exit status 143
    ("ctrl-c", "writing last", 8, [], 4),
    ("kill", "last: after the save", 8, [], 8),
    ("kill", "last: before the renames", 8, ["last.tmp"], 4),
    ("kill", "last: between the renames", 8, ["last.old", "last.tmp"], 4),
    ("kill", "last: after the renames", 8, ["last.old"], 8),
    ("kill", "last: removing the old folder", 8, ["last.old"], 8),
    ("kill", "best: between the renames", BEST, ["best.old", "best.tmp", "last.tmp"], -4),
    ("kill", "best: removing the old folder", BEST, ["best.old", "last.tmp"], -4),
    ("full disk", "optimizer.pt", 8, [], 4),
    ("full disk", "model.safetensors", 8, [], 4),
]


@pytest.mark.parametrize("how, where, step, leftovers, resumed_after", CUTS, ids=[f"{c[0]}, {c[1]}"
                                                                                   for c in CUTS])
def test_a_cut_run_resumed_ends_as_the_uninterrupted_run(how, where, step, leftovers, resumed_after, whole,
                                                         tmp_path):
    reference, args = whole
    if step is BEST:  # a save that writes best/: the last new best after step 0; last/ is then a save behind
        log = log_without_seconds(reference)
        step = [r["step"] for i, r in enumerate(log)
                if i and r["stsb_dev"] > max(x["stsb_dev"] for x in log[:i])][-1]
        resumed_after += step
    out = tmp_path / "cut"
    cut = train_cli([how, where, str(step)] + args + ["--output-dir", str(out)], INTERRUPT)
    message = cut.stderr.strip().splitlines()[-1]  # after the progress bar
    assert "Traceback" not in cut.stderr, cut.stderr[-2000:]
    if how in ("ctrl-c", "sigterm"):
        assert cut.returncode == (130 if how == "ctrl-c" else 143), cut.stderr[-2000:]
        assert "interrupted" in message and "--resume" in message
    elif how == "kill":
        assert cut.returncode == -9, cut.stderr[-2000:]
    else:  # one line naming the file being written and the space it needed; the previous save kept
        assert cut.returncode == 1 and message.startswith("error: "), cut.stderr[-2000:]
        assert f"last.tmp/{where}" in message and "needs about" in message and "MiB free" in message
        assert [r["step"] for r in log_without_seconds(out)] == [0, 4]
        assert json.loads((out / "last" / "state.json").read_text())["step"] == 4
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.suffix in (".tmp", ".old")) == leftovers
    if where == "last: after the save":
        assert [r["step"] for r in log_without_seconds(out)] == [0, 4]  # log.jsonl a save behind last/
    resumed = train_cli(args + ["--output-dir", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"after step {resumed_after}" in resumed.stdout) == (resumed_after is not None), resumed.stdout
    assert_same_run(out, reference)


def test_resume_with_nothing_to_resume_or_another_config_is_one_line(tiny_checkpoint, data_root, tmp_path):
    common = ARGS + ["--model", tiny_checkpoint, "--data-dir", str(data_root), "--output-dir",
                     str(tmp_path / "run")]
    nothing = train_cli(common + ["--resume"])
    assert (nothing.returncode == 1 and "nothing to resume" in nothing.stderr
            and "Traceback" not in nothing.stderr)
    assert train_cli(common + ["--max-steps", "4"]).returncode == 0
    other = train_cli(common + ["--max-steps", "4", "--lr", "1e-4", "--dropout", "0.2", "--resume"])
    message = other.stderr.strip()
    assert other.returncode == 1 and "\n" not in message and "Traceback" not in message
    assert ("another configuration" in message and "dropout 0.1 -> 0.2" in message
            and "lr 3e-05 -> 0.0001" in message)


def test_a_real_full_disk_keeps_the_previous_save_and_resume_goes_on(whole, tmp_path):
    reference, args = whole
    size = lambda folder: sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    one_save = size(reference / "best") + size(reference / "last")
    disk, out = tmp_path / "disk", tmp_path / "disk" / "run"
    disk.mkdir()
    limit = one_save + size(reference / "last") // 2  # a second save beside the first cannot fit
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={limit}", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a small tmpfs is not permitted here (the monkeypatched full disks still run)")
    try:
        full = train_cli(args + ["--output-dir", str(out)])
        message = full.stderr.strip().splitlines()[-1]
        assert full.returncode == 1 and message.startswith(f"error: {out}/"), full.stderr[-2000:]
        assert "needs about" in message and ("no space left" in message or "disk full" in message)
        kept = [r["step"] for r in log_without_seconds(out)]  # AdamW's state appears at step 1: a later save
        assert kept == [0, 4, 8][:len(kept)]  # the previous save, whole (the log up to last/'s step)
        assert json.loads((out / "last" / "state.json").read_text())["step"] == kept[-1]
        assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []  # nothing keeps the disk full
        subprocess.run(["mount", "-o", f"remount,size={4 * one_save}", str(disk)], check=True)  # space freed
        resumed = train_cli(args + ["--output-dir", str(out), "--resume"])
        assert resumed.returncode == 0 and f"after step {kept[-1]}" in resumed.stdout, resumed.stderr[-2000:]
        assert_same_run(out, reference)
    finally:
        subprocess.run(["umount", str(disk)])


def test_resume_checks_its_data_and_takes_the_folder_by_any_path(tiny_checkpoint, data_root, tmp_path):
    lines = (data_root / "wiki" / "wiki1m_head.txt").read_text().splitlines()[:64]
    train_file, out, other = tmp_path / "train.txt", tmp_path / "run", tmp_path / "other_data"
    train_file.write_text("\n".join(lines) + "\n")
    stsb = data_root / "senteval" / "STS" / "STSBenchmark"
    (other / "senteval" / "STS" / "STSBenchmark").mkdir(parents=True)  # another STS-B dev: one pair fewer
    for split in ("train", "dev", "test"):
        text = (stsb / f"sts-{split}.csv").read_text()
        (other / "senteval" / "STS" / "STSBenchmark" / f"sts-{split}.csv").write_text(
            "".join(text.splitlines(keepends=True)[:-1]) if split == "dev" else text)
    common = ["--max-steps", "4", "--eval-steps", "4", "--batch-size", "8", "--no-test", "--model",
              tiny_checkpoint, "--train-file", str(train_file), "--data-dir", str(data_root)]
    assert train_cli(common + ["--output-dir", str(out)]).returncode == 0
    pinned = json.loads((out / "run.json").read_text())["data"]
    sha256 = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()
    assert pinned["train_file"] == {"path": str(train_file.resolve()), "bytes": train_file.stat().st_size,
                                    "examples": 64, "sha256": sha256(train_file)}
    assert pinned["stsb_dev"]["sha256"] == sha256(stsb / "sts-dev.csv")

    same = train_cli(common + ["--output-dir", os.path.relpath(out, REPO), "--resume"])  # a relative path
    assert same.returncode == 0 and "after step 4" in same.stdout, same.stderr[-2000:]
    dev = train_cli(common + ["--output-dir", str(out), "--resume", "--data-dir", str(other)])
    message = dev.stderr.strip()
    assert dev.returncode == 1 and "\n" not in message, dev.stderr[-2000:]
    other_dev = (other / "senteval" / "STS" / "STSBenchmark" / "sts-dev.csv").resolve()
    assert message.startswith(f"error: {other_dev}: not the stsb dev")
    train_file.write_text("\n".join(lines[:-1]) + "\n")  # the training file shrunk
    shrunk = train_cli(common + ["--output-dir", str(out), "--resume"])
    message = shrunk.stderr.strip()
    assert shrunk.returncode == 1 and "\n" not in message and "examples 64 -> 63" in message
    assert message.startswith(f"error: {train_file.resolve()}: not the train file")


def test_interrupted_checkpoint_write_leaves_the_previous_one(tmp_path):
    folder = tmp_path / "best"
    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32))
    run_folder.replace_folder(folder, lambda tmp: model.save_pretrained(tmp))
    saved = (folder / "model.safetensors").read_bytes()

    def crash_half_way(tmp):  # the new weights are written, then the process dies before the swap
        with torch.no_grad():
            model.pooler.dense.weight.add_(1.0)
        model.save_pretrained(tmp)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_folder.replace_folder(folder, crash_half_way)
    assert (folder / "model.safetensors").read_bytes() == saved
    BertModel.from_pretrained(str(folder))  # complete and loadable

    # A crash between the swap's two renames leaves best.old and no best: recover() puts it back.
    folder.rename(tmp_path / "best.old")
    run_folder.recover(tmp_path)
    assert (folder / "model.safetensors").read_bytes() == saved


def nan_from(steps, monkeypatch):
    """Make contrastive_loss return NaN at the given (1-based) training steps."""
    calls = {"n": 0}
    loss = simcse.contrastive_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        value = loss(*args, **kwargs)
        return value * float("nan") if calls["n"] in steps else value
    monkeypatch.setattr(simcse, "contrastive_loss", poisoned)


def tiny_config(tiny_checkpoint, data_root, out, **kw):
    return train.TrainConfig(**{**dict(model=tiny_checkpoint, output_dir=str(out), batch_size=8, max_steps=6,
                                       eval_steps=2, data_dir=str(data_root)), **kw})


def test_a_nan_loss_is_skipped_and_counted(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    nan_from({3}, monkeypatch)
    result = train.train(tiny_config(tiny_checkpoint, data_root, tmp_path / "run"), progress=False,
                         test=False)
    assert [(r["step"], r["nonfinite"]) for r in result["log"]] == [(0, 0), (2, 0), (4, 1), (6, 1)]
    assert all(math.isfinite(r["loss"]) for r in result["log"][1:])  # the mean of the finite steps
    weights = read_safetensors(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())  # the update was skipped, not applied
    state = torch.load(tmp_path / "run" / "last" / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    assert all(int(s["step"]) == 5 for s in state.values())  # 6 steps, one skipped


def test_repeated_nans_stop_the_run_and_keep_the_best(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    nan_from(set(range(3, 100)), monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError,
                       match=r"5 non-finite losses or gradients in a row \(last at step 7\)"):
        train.train(tiny_config(tiny_checkpoint, data_root, out, max_steps=20), progress=False, test=False)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["nonfinite"] for r in log] == [0, 0, 2, 4]
    assert json.loads((out / "best" / "train_config.json").read_text())["max_steps"] == 20
    weights = read_safetensors(str(out / "best" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    best = max(log, key=lambda r: r["stsb_dev"])
    assert best["step"] <= 2  # evaluations after step 2 score the same model: not a new best


def test_sweep_statistics_and_restart(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["--seeds", "1", "2", "--settings", "--dropout 0.1", "--dropout 0.1 --fixed-mask", "--output-dir",
            str(out), "--model", tiny_checkpoint, "--data-dir", str(data_root), "--batch-size", "8",
            "--max-steps", "3", "--eval-steps", "1",
            "--no-mlp-only-train", "--no-test"]  # the MLP, new per seed, in every score
    ablate.sweep(argv)
    report = json.loads((out / "sweep.json").read_text())
    assert [(r["setting"], r["seed"]) for r in report["runs"]] == [
        ("--dropout 0.1", 1), ("--dropout 0.1", 2), ("--dropout 0.1 --fixed-mask", 1),
        ("--dropout 0.1 --fixed-mask", 2)]
    for setting, summary in report["summary"].items():
        values = [r["stsb_dev"] for r in report["runs"] if r["setting"] == setting]
        for run in (r for r in report["runs"] if r["setting"] == setting):  # each number is its run's best
            log = [json.loads(line) for line in (REPO / run["folder"] / "log.jsonl").read_text().splitlines()]
            assert run["stsb_dev"] == max(r["stsb_dev"] for r in log if r["step"] > 0)  # trained: not step 0
        assert summary["stsb_dev"] == {"n": 2, "mean": pytest.approx(statistics.mean(values)),
                                       "min": min(values), "max": max(values),
                                       "std": pytest.approx(statistics.stdev(values))}
        assert summary["test_avg"]["n"] == 0
        assert values[0] != values[1] and summary["stsb_dev"]["std"] > 0  # statistics of numbers that differ
    assert (out / "sweep.md").read_text().count("| `--dropout 0.1") == 2 and (out / "sweep.png").exists()

    # Killed during a run: the restart skips finished runs and resumes the interrupted one.
    (out / "dropout_0.1_fixed-mask" / "seed-2" / "sweep_run.json").unlink()
    calls = []
    real_train = train.train
    monkeypatch.setattr(train, "train",
                        lambda cfg, **kw: calls.append((cfg.seed, kw["resume"])) or real_train(cfg, **kw))
    ablate.sweep(argv)
    assert calls == [(2, True)]
    assert untimed(json.loads((out / "sweep.json").read_text())["runs"]) == untimed(report["runs"])


def untimed(runs):  # the records but the seconds of the call that finished each run
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
