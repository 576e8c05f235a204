"""Every command reads its command line one way (formats/command_line.py): each numeric and path flag given
a shared list of bad values is refused in one line naming it, exit status 1, before any work and with no
file or folder made; argparse's own errors are one line too; no prefix abbreviations, no flag twice; every
output written whole; damaged files named; log.jsonl strict JSON; an interrupt while a command imports
ends it quietly."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import ablate
import bench.__main__ as bench
import data
import demo
import eval_sts
import eval_transfer
import tool
import train
from experiments import grid
from formats import files
from helpers.runs import REPO, HalfWritten

# --- The table: every command x its numeric and path flags x the shared bad values -----------------------

SHARED = ["negative", "zero", "nan", "inf", "huge", "empty", "folder", "fifo"]
NUMBERS = {"negative": "-1", "zero": "0", "nan": "nan", "inf": "inf"}
# Which of the shared values are bad for a kind of flag (the rest are fine values of it), and two more for
# paths: a file in a folder that does not exist, and a regular file where a folder belongs.
BAD = {"size": SHARED, "positive": SHARED, "count": [v for v in SHARED if v != "zero"],
       "nonnegative": [v for v in SHARED if v != "zero"],
       "seed": [v for v in SHARED if v != "zero"], "probability": [v for v in SHARED if v != "zero"],
       "finite": [v for v in SHARED if v not in ("negative", "zero")],
       "input": SHARED, "output": ["empty", "folder", "fifo", "missing folder"],
       "folder": ["empty", "fifo", "a file"], "model": ["empty", "folder", "fifo"], "text": ["empty"]}
HUGE = {"size": str(2**64), "count": str(2**64), "seed": str(2**64)}  # floats: 1e999, which overflows

# (command, its main, argv before the flag under test: {flag: value}, [(flag, kind)]). The base values make
# a command that wrongly accepts a bad value fail fast on something else (which the table then reports).
COMMANDS = {
    "train.py": (train.main, lambda p: {"--model": p["tiny"], "--data-dir": p["data"], "--max-steps": "1",
                                        "--batch-size": "8", "--eval-steps": "1", "--no-test": None,
                                        "--output-dir": p["out"]},
                 [("--batch-size", "size"), ("--max-steps", "size"), ("--eval-steps", "size"),
                  ("--max-length", "size"), ("--micro-batch", "size"), ("--lr", "positive"),
                  ("--epochs", "positive"), ("--temp", "positive"), ("--dropout", "probability"),
                  ("--hidden-dropout", "probability"), ("--attention-dropout", "probability"),
                  ("--embedding-dropout", "probability"), ("--dropout-layers", "text"),
                  ("--dev-file", "input"),
                  ("--hard-negative-weight", "finite"), ("--mlm-weight", "nonnegative"), ("--seed", "seed"),
                  ("--output-dir", "folder"), ("--train-file", "model"), ("--model", "model"),
                  ("--data-dir", "folder")]),
    "eval_sts.py": (eval_sts.main, lambda p: {"--model": p["tiny"], "--data-dir": p["empty data"]},
                    [("--batch-size", "size"), ("--json", "output"), ("--model", "model"),
                     ("--data-dir", "folder"), ("--pairs", "input")]),
    "eval_transfer.py": (eval_transfer.main, lambda p: {"--model": p["tiny"], "--data-dir": p["empty data"]},
                         [("--batch-size", "size"), ("--seed", "seed"), ("--json", "output"),
                          ("--model", "model"), ("--data-dir", "folder")]),
    "tool.py encode": (tool.main, lambda p: {"encode": None, "--model": p["tiny"], "--input": p["corpus"],
                                             "--output": p["out"] + ".npy"},
                       [("--batch-size", "size"), ("--input", "input"), ("--output", "output"),
                        ("--model", "model")]),
    "tool.py search": (tool.main, lambda p: {"search": None, "--model": p["tiny"], "--corpus": p["corpus"],
                                             "--query": "a"},
                       [("--top-k", "size"), ("--threshold", "finite"), ("--batch-size", "size"),
                        ("--corpus", "input")]),
    "ablate.py table3": (ablate.main, lambda p: {"table3": None, "--seeds": "1", "--max-steps": "1",
                                                 "--batch-size": "8", "--model": p["tiny"],
                                                 "--data-dir": p["empty data"], "--output-dir": p["out"]},
                         [("--seeds", "seed"), ("--max-steps", "size"), ("--eval-steps", "size"),
                          ("--batch-size", "size"), ("--output-dir", "folder"), ("--model", "model"),
                          ("--data-dir", "folder"), ("--jobs", "size")]),
    "ablate.py sweep": (ablate.main, lambda p: {"sweep": None, "--seeds": "1", "--output-dir": p["out"],
                                                "--model": p["tiny"], "--data-dir": p["empty data"]},
                        [("--seeds", "seed"), ("--output-dir", "folder"), ("--lr", "positive"),
                         ("--jobs", "size")]),
    "demo.py": (demo.main, lambda p: {"--model": p["tiny"], "--corpus": p["corpus"],
                                      "--runs": p["no folder"]},
                [("--port", "count"), ("--corpus", "input"), ("--compare", "text"), ("--host", "text"),
                 ("--runs", "folder"), ("--model", "model")]),
    "data.py download": (data.main, lambda p: {"download": None}, [("--data-dir", "folder")]),
    "python -m bench": (bench.main, lambda p: {"train": None, "--data-dir": p["empty data"]},
                        [("--batch-size", "size"), ("--steps", "size"), ("--warmup", "count"),
                         ("--rounds", "size"), ("--micro-batch", "size"), ("--model", "text"),
                         ("--data-dir", "folder")]),
}


@pytest.fixture
def places(tmp_path, tiny_checkpoint, data_root, monkeypatch):
    """Paths the table gives: a folder, a FIFO, a regular file, an empty data folder, a corpus; the
    command runs in `work`, whose every file and folder is listed before and after."""
    work = tmp_path / "work"
    for folder in (work, tmp_path / "folder", tmp_path / "empty data"):
        folder.mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "a file").write_text("a file\n")
    (tmp_path / "corpus.txt").write_text("A man plays a guitar.\nA cat sleeps.\n")
    monkeypatch.chdir(work)
    return {"tiny": tiny_checkpoint, "data": str(data_root), "empty data": str(tmp_path / "empty data"),
            "out": str(work / "out"), "corpus": str(tmp_path / "corpus.txt"),
            "folder": str(tmp_path / "folder"),
            "fifo": str(tmp_path / "fifo"), "a file": str(tmp_path / "a file"),
            "missing folder": str(tmp_path / "no such folder" / "x.json"), "empty": "",
            "no folder": str(tmp_path / "no such folder"),
            "work": work, "tmp": tmp_path}


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refusal(main, argv, capsys):
    """main(argv) in this process: the one line it ends with (nothing else on stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        main(argv)
    message, err = str(ended.value.code), capsys.readouterr().err
    assert message.startswith("error: ") and "\n" not in message and err == "", (argv, message, err)
    return message


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_numeric_and_path_flag_refuses_the_shared_bad_values(command, places, capsys):
    main, base, flags = COMMANDS[command]
    before = listing(places["tmp"])
    for flag, kind in flags:
        for bad in BAD[kind]:
            value = NUMBERS.get(bad) or (HUGE.get(kind, "1e999") if bad == "huge" else places[bad])
            argv = [x for k, v in {**base(places), flag: value}.items()
                    for x in ([k] if v is None else [k, v])]
            message = refusal(main, argv, capsys)
            assert flag in message or value and value in message, (argv, message)  # names the flag or file
            assert listing(places["tmp"]) == before, argv  # no file or folder made


# --- argparse as every command uses it --------------------------------------------------------------------

def test_argparse_errors_abbreviations_repeats_and_negative_values(capsys):
    message = refusal(train.main, ["--over"], capsys)  # was --overwrite: deletes a run's results
    assert message.startswith("error: unrecognized arguments: --over")
    assert "unrecognized arguments: --res" in refusal(eval_sts.main, ["--res"], capsys)
    assert refusal(train.main, ["--lr", "1e-4", "--lr", "2e-4"], capsys).startswith("error: --lr given twice")
    assert "--compile and --no-compile" in refusal(train.main, ["--compile", "--no-compile"], capsys)
    assert "--top-k given twice" in refusal(tool.main, ["search", "--top-k", "1", "--top-k=2"], capsys)
    # -1e-5 is read as --lr's value (argparse alone: "expected one argument"), then refused as a value
    assert refusal(train.main, ["--lr", "-1e-5"], capsys) == "error: --lr -1e-05: expected a positive number"
    assert "'-inf': expected a finite number" in refusal(tool.main, ["search", "--threshold", "-inf"], capsys)


def test_argparse_errors_are_one_line_with_exit_status_1_in_a_real_process():
    run = subprocess.run([sys.executable, "eval_transfer.py", "--batch-size", "-1"], cwd=REPO,
                         capture_output=True, text=True)  # it encoded nothing and printed CR 63.76, exit 0
    assert run.returncode == 1 and run.stdout == "", run.stderr
    assert run.stderr == ("error: argument --batch-size: '-1': expected an integer in [1, 2**63) "
                          "(usage: eval_transfer.py --help)\n")


# --- The cases that gave a wrong number, lost work or a traceback -------------------------------------------

def test_encode_refuses_a_batch_size_below_1(tiny_checkpoint):
    model, tokenizer, _ = tool.load_for_evaluation(tiny_checkpoint, "avg")
    for size in (0, -1):  # range() gave no batch: uninitialised rows, scored as embeddings
        with pytest.raises(ValueError, match=f"batch size {size}: expected an integer of at least 1"):
            tool.encode(model, tokenizer, ["a", "b"], "avg", batch_size=size)


def test_a_task_twice_is_refused_not_counted_twice_in_the_average(capsys):
    message = refusal(eval_sts.main, ["--tasks", "STS16", "STS16", "STSBenchmark"], capsys)
    assert "argument --tasks: STS16 given twice" in message
    with pytest.raises(ValueError, match="STS16 STS16 STSBenchmark: a task given twice"):
        eval_sts.evaluate(None, None, tasks=["STS16", "STS16", "STSBenchmark"])
    assert "argument --tasks: MR given twice" in refusal(eval_transfer.main, ["--tasks", "MR", "MR"], capsys)


def test_json_output_is_checked_before_any_evaluation(tmp_path, monkeypatch, capsys):
    def loaded(*args):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(eval_sts, "load_for_evaluation", loaded)
    monkeypatch.setattr(eval_transfer, "load_for_evaluation", loaded)
    for main in (eval_sts.main, eval_transfer.main):
        for path, why in ((tmp_path / "none" / "s.json", "does not exist"), (tmp_path, "not a regular file")):
            assert why in refusal(main, ["--json", str(path)], capsys)


def test_epochs_too_many_to_count_and_an_empty_output_dir_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # --output-dir "" trained into the current folder
    assert refusal(train.main, ["--epochs", "1e308"], capsys) == (
        "error: --epochs 1e+308: expected a positive number of at most 1e6")  # was an OverflowError
    assert refusal(train.main, ["--output-dir", ""], capsys) == "error: --output-dir '': an empty path"
    assert list(tmp_path.iterdir()) == []


def test_a_training_file_named_in_capitals_is_read_as_its_kind(tmp_path):
    (tmp_path / "train.CSV").write_text("sent0,sent1,hard_neg\na,b,c\nd,e,f\n")
    path, examples, skipped = data.read_training_file(str(tmp_path / "train.CSV"))
    assert examples == [("a", "b", "c"), ("d", "e", "f")] and skipped == 0  # not 3 unsupervised lines


def test_a_config_with_an_impossible_pad_id_is_one_line_naming_it(tiny_checkpoint, data_root, tmp_path,
                                                                  capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "pad_token_id": config["vocab_size"]}))
    expected = (f"error: {model / 'config.json'}: pad_token_id {config['vocab_size']} is not an id of the "
                f"vocabulary (0 to {config['vocab_size'] - 1})")  # not an assertion inside nn.Embedding
    common = ["--model", str(model), "--data-dir", str(data_root)]
    assert refusal(eval_sts.main, common, capsys) == expected
    assert refusal(train.main, common + ["--output-dir", str(tmp_path / "run")], capsys) == expected
    assert not (tmp_path / "run").exists()


def test_tool_input_of_the_wrong_kind_and_a_nan_threshold(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path, tmp_path / "fifo"):  # was "no such file"; a FIFO is never read (it would wait)
        argv = ["search", "--model", "m", "--corpus", str(path), "--query", "a"]
        message = refusal(tool.main, argv, capsys)
        assert message.startswith(f"error: argument --corpus: '{path}': not a regular file")
        with pytest.raises(FileNotFoundError, match="not a regular file"):
            tool.read_corpus(path)
    (tmp_path / "c.txt").write_text("A cat sleeps.\n")
    message = refusal(tool.main, ["search", "--model", "m", "--corpus", str(tmp_path / "c.txt"), "--query", "a",
                                  "--threshold", "nan"], capsys)
    assert "argument --threshold: 'nan': expected a finite number" in message


def test_tool_encode_on_a_full_disk_keeps_the_old_output(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("A man plays a guitar.\nA cat sleeps.\n")
    out = tmp_path / "z.npy"
    out.write_bytes(b"the embeddings of yesterday")

    def disk_full():
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files, "open", lambda path, mode: HalfWritten(open(path, mode), disk_full),
                        raising=False)
    message = refusal(tool.main, ["encode", "--model", tiny_checkpoint, "--input", str(tmp_path / "in.txt"),
                                  "--output", str(out)], capsys)
    assert message == f"error: {out}: no space left on the device (an array of 0.0 MiB)"
    assert out.read_bytes() == b"the embeddings of yesterday" and sorted(tmp_path.iterdir()) == [
        tmp_path / "in.txt", out]  # untouched (it was truncated, then deleted), no .tmp left
    monkeypatch.undo()
    tool.main(["encode", "--model", tiny_checkpoint, "--input", str(tmp_path / "in.txt"), "--output",
               str(out)])
    assert np.load(out).shape == (2, 64)


def test_a_table_whose_folder_has_a_space_and_a_backslash_plans_every_run(tiny_checkpoint, data_root,
                                                                           tmp_path, monkeypatch):
    out = tmp_path / "my tables" / "t7\\x"  # was "unrecognized arguments": the path split by shlex
    planned = []

    def run_grid(plan, names, report, *jobs_and_shared):  # the runs planned, none run
        planned.extend(plan)
        return [], {}
    monkeypatch.setattr(grid, "run_grid", run_grid)
    ablate.main(["table7", "--seeds", "1", "--model", tiny_checkpoint, "--data-dir", str(data_root),
                 "--output-dir", str(out)])
    assert len(planned) == 4 and (out / ablate.PAIRS).is_file()
    assert str(out / ablate.PAIRS) in {cfg.train_file for _, _, _, cfg, _, _ in planned}
    assert all(cfg.output_dir == str(folder) and str(out) in str(folder)
               for _, _, folder, cfg, _, _ in planned)


# --- Damaged run state; log.jsonl strict JSON ------------------------------------------------------------

@pytest.fixture(scope="module")
def nonfinite_run(tiny_checkpoint, data_root, tmp_path_factory):
    """A tiny run whose starting model gives every sentence one embedding (its last LayerNorm's weights 0):
    STS-B dev's Spearman correlation is NaN. Returns (its folder, the flags that made it but --output-dir)."""
    flat = tmp_path_factory.mktemp("flat") / "model"
    shutil.copytree(tiny_checkpoint, flat)
    weights = load_file(flat / "model.safetensors")
    weights["encoder.layer.1.output.LayerNorm.weight"].zero_()
    save_file(weights, flat / "model.safetensors", metadata={"format": "pt"})
    args = ["--model", str(flat), "--data-dir", str(data_root), "--max-steps", "1", "--batch-size", "8",
            "--eval-steps", "1", "--no-test"]
    out = flat.parent / "run"
    train.main(args + ["--output-dir", str(out)])
    return out, args


def test_log_jsonl_is_strict_json_after_a_nonfinite_evaluation(nonfinite_run):
    out, _ = nonfinite_run

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    log = [json.loads(line, parse_constant=refuse) for line in open(out / "log.jsonl")]
    assert log[0]["stsb_dev"] is None and log[0]["nan_or_inf"] == ["stsb_dev"] and len(log) == 2
    assert log[0]["align"] == pytest.approx(0, abs=1e-6) and log[0]["uniform"] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("damage, why", [
    (lambda state: state.update(step="2"), "step '2' is not int"),
    (lambda state: state.pop("log"), "no 'log'"),
    (lambda state: state["log"][0].pop("seconds"), "no 'log[0].seconds'")])
def test_a_damaged_last_pt_is_one_line_naming_it(nonfinite_run, damage, why, tmp_path, capsys):
    run, args = nonfinite_run
    out = tmp_path / "run"
    shutil.copytree(run, out)
    state = torch.load(out / "last.pt", weights_only=True)
    damage(state)
    torch.save(state, out / "last.pt")
    assert refusal(train.main, args + ["--output-dir", str(out), "--resume"], capsys) == (
        f"error: {out / 'last.pt'}: cannot be read ({why}); --overwrite starts over")


# --- Interrupts while a command imports ---------------------------------------------------------------------

@pytest.mark.parametrize("command, sent, status", [("train.py", signal.SIGINT, 130),
                                                   ("eval_sts.py", signal.SIGTERM, 143)])
def test_an_interrupt_while_importing_ends_quietly(command, sent, status):
    """The signal comes once torch's library is loaded (the imports half done): exit status 130 or 143 and
    nothing said, as later (it was a traceback, or a death by the signal). --batch-size 0 would end the
    command with exit status 1 if its imports were over."""
    run = subprocess.Popen([sys.executable, command, "--batch-size", "0"], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{run.pid}/maps")
    while run.poll() is None and "libtorch" not in maps.read_text():
        time.sleep(0.01)
    run.send_signal(sent)
    out, err = run.communicate(timeout=60)
    assert run.returncode == status and err == "" and out == "", (run.returncode, err)
