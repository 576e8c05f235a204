"""What a training run writes in its --output-dir, written so that nothing is ever lost:

    run.json           the run's configuration, written when it starts (what --resume must match)
    log.jsonl          one line per evaluation on STS-B dev
    best/              the best checkpoint so far (Hugging Face + sentence-transformers layout)
    last/              everything needed to resume: weights, AdamW and schedule state, the log
    test_scores.json   the best checkpoint on the seven STS test sets, at the end

One process owns the folder: the first takes an exclusive lock on <output-dir>/.lock (its pid written in it)
and holds it for the whole run; the system releases it when the process ends, however it ends. A second
train.py on the folder -- new run, --resume or --overwrite -- is refused at once, naming that pid. A folder
that holds a run is never written over by accident: a new run there refuses, naming --resume and --overwrite.

Each save fills new folders beside the old ones (best.tmp/, last.tmp/, log.jsonl.tmp), then swaps them in by
renaming: X -> X.old, X.tmp -> X, X.old deleted. A full disk can only strike while filling, before any swap,
so it leaves the previous best/, last/ and log. A kill may cut a save anywhere; the next start (and --resume's
check) applies one rule to best and last:

    X exists:           X.tmp and X.old are leftovers and are deleted;
    X missing, X.old:   the swap was cut between its renames: X.old is renamed back to X.
    X.tmp is never trusted.

last/ is the run's state (its log included); log.jsonl is rewritten from it on --resume, and steps that
last/ does not hold are trained again, with the same data order and dropout masks (train.py), so that
best/, last/ and log.jsonl end with the same bytes as an uninterrupted run.
"""
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from formats.checkpoint import read_weights, write_safetensors
from formats.st_files import save_sentence_transformers
from infra.config import experiment
from formats.files import disk_full, fill_file, write_file
from simcse import embedding_pooler

RESULTS = ("run.json", "log.jsonl", "best", "last", "test_scores.json", "transfer_scores.json")


class RunFolder:
    def __init__(self, cfg, resume=False, overwrite=False, master=True):
        """Checks only, under the folder's lock when it exists: nothing else is created or changed until
        start()."""
        self.out, self.cfg, self.master, self.overwrite = Path(cfg.output_dir), cfg, master, overwrite
        self.resume, self.lock_file = resume, None
        if self.out.exists() and not self.out.is_dir():
            raise FileExistsError(f"--output-dir {self.out}: a file, not a folder")
        if self.out.is_dir():
            self.lock()  # before any check reads the folder: another process may be writing it
        held = [name for name in RESULTS if (self.out / name).exists()]
        if resume:
            saved = self.saved_config()
            if saved is None:
                raise FileNotFoundError(f"{self.out}: nothing to resume (no run.json or last/state.json); "
                                        "run without --resume to start")
            now = experiment(cfg)
            same = lambda k: (saved.get(k) == now.get(k) or k == "output_dir"  # one folder, however named
                              and Path(saved[k]).resolve() == Path(now[k]).resolve())
            changed = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
                       if not same(k)]
            if changed:
                raise ValueError(f"{self.out} was trained with another configuration; --resume needs the "
                                 f"same ({'; '.join(changed)})")
        elif held and not overwrite:
            raise FileExistsError(f"{self.out} holds a run ({', '.join(held)}): continue it with --resume, "
                                  f"start over with --overwrite (deletes its results), or choose another "
                                  f"--output-dir")

    def lock(self):
        """Own the folder for the life of this process (flock: released by the system when it ends)."""
        if self.lock_file is not None or not self.master:
            return
        f = open(self.out / ".lock", "a+")  # "a+": a refused process never empties the holder's pid
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise OSError(f"{self.out} is in use by process {holder} (another train.py on this folder): "
                          f"wait for it to end, or choose another --output-dir") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        self.lock_file = f  # kept open: closing it, or the end of the process, releases the lock

    def saved_config(self):
        if self.master:
            recover(self.out)
        for path in (self.out / "last" / "state.json", self.out / "run.json"):
            if path.exists():
                saved = read_json(path)
                if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
                    raise ValueError(f"{path}: no run configuration in it (damaged?)")
                return saved["config"]
        return None

    def start(self, model, optimizer, schedule, train_file, dev_file):
        """The state to go on from: step 0, or what last/ holds with --resume. train_file: (path, examples)
        as found (data.training_file may substitute or fetch); dev_file: the STS-B dev file."""
        self.data = {"train_file": pin(train_file[0], examples=train_file[1]), "stsb_dev": pin(dev_file)}
        self.state = self.load(model, optimizer, schedule)
        self.train_file = train_file
        last = self.state["log"][-1] if self.state["log"] else {}
        self.clock = time.perf_counter() - last.get("seconds", 0)  # seconds of training, over resumes
        return self.state

    def nonfinite(self):  # updates skipped so far (by guard.py)
        return self.state["log"][-1]["nonfinite"] if self.state["log"] else 0

    def load(self, model, optimizer, schedule):
        if self.master:
            self.out.mkdir(parents=True, exist_ok=True)
            self.lock()  # before anything is written
            if self.overwrite:  # the old run's results go, all of them: none may describe the new model
                for name in RESULTS:
                    for path in (self.out / name, self.out / (name + ".tmp"), self.out / (name + ".old")):
                        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            recover(self.out)
            run_json = self.out / "run.json"
            if self.resume and run_json.exists():
                self.check_data(read_json(run_json).get("data", {}))
            if not run_json.exists():
                run = {"config": experiment(self.cfg), "data": self.data}
                write_file(run_json, json.dumps(run, indent=1))
        if not (self.resume and (self.out / "last" / "state.json").exists()):
            return {"config": experiment(self.cfg), "step": 0, "best": None, "log": []}
        last = self.out / "last"
        state = read_json(last / "state.json")
        model.load_state_dict(read_weights(str(last / "model.safetensors")))  # damaged: one line naming it
        try:  # tensors and numbers, no code
            saved = torch.load(last / "optimizer.pt", weights_only=True)
        except Exception as e:  # truncated or not a torch file: torch's advice to unpickle is no answer
            why = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise ValueError(f"{last / 'optimizer.pt'}: cannot be read ({why}); the run can only start over "
                             f"(--overwrite)") from None
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        if self.master:
            # the log as last/ holds it: a kill after the swap of last/ left log.jsonl a save behind
            write_file(self.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in state["log"]))
            print(f"resuming {self.out} after step {state['step']}")
        return state

    def check_data(self, saved):
        """--resume trains and selects on the data the run started with (run.json's "data"; older runs have
        none)."""
        for key, pinned in saved.items():
            now = self.data.get(key, {})
            differ = [k for k in ("path", "bytes", "examples", "sha256") if pinned.get(k) != now.get(k)]
            if differ:
                raise ValueError(f"{now.get('path')}: not the {key.replace('_', ' ')} the run in {self.out} "
                                 f"started with ({pinned.get('path')}; " + ", ".join(
                                     f"{k} {pinned.get(k)} -> {now.get(k)}" for k in differ) +
                                 "); --resume needs the same data")

    def save(self, step, loss, metrics, nonfinite, model, tokenizer, optimizer, schedule):
        """Log an evaluation; keep the checkpoint if it is the best; save what resuming needs. Everything is
        written first (best.tmp/, last.tmp/, log.jsonl.tmp), then swapped in: a full disk leaves the old."""
        state = self.state
        record = {"step": step, "loss": loss, "lr": schedule.get_last_lr()[0], **metrics,
                  "nonfinite": nonfinite, "seconds": round(time.perf_counter() - self.clock, 1)}
        if step == 0:  # what was trained on
            record.update(train_file=str(self.train_file[0]), train_examples=self.train_file[1])
        better = state["best"] is None or record["stsb_dev"] > state["best"]["stsb_dev"]  # never a NaN
        best = record if better else state["best"]
        new = {**state, "log": state["log"] + [record], "step": step, "best": best}
        weights, filled = nbytes(model.state_dict()), []
        try:
            if better:
                write = lambda tmp: save_checkpoint(model, tokenizer, self.cfg, tmp)
                filled.append(fill(self.out / "best", write, weights))
            write = lambda tmp: save_state(tmp, model, optimizer, schedule, new)
            filled.append(fill(self.out / "last", write, weights + nbytes(optimizer.state_dict()["state"])))
            log = "".join(json.dumps(r) + "\n" for r in new["log"])
            filled.append(fill_file(self.out / "log.jsonl", log))
        except BaseException:
            for tmp in filled:  # no .tmp left behind: on a full disk it would keep the disk full
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            raise
        for tmp in filled[:-1]:
            swap(tmp.with_name(tmp.name.removesuffix(".tmp")))  # best/ (if better), then last/
        os.replace(filled[-1], self.out / "log.jsonl")
        state.update(new)  # the same dict train.py holds

    def write(self, name, record):  # a JSON file of results, e.g. test_scores.json
        write_file(self.out / name, json.dumps(record, indent=2))


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def pin(path, **more):
    """What identifies a data file: its resolved path, size and sha256 (and what else is given)."""
    path, digest = Path(path).resolve(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, **more, "sha256": digest.hexdigest()}


def nbytes(tensors):  # the bytes of the tensors in a (nested) state dict: about what saving them needs
    if isinstance(tensors, torch.Tensor):
        return tensors.numel() * tensors.element_size()
    if isinstance(tensors, dict):
        tensors = list(tensors.values())
    return sum(nbytes(v) for v in tensors) if isinstance(tensors, (list, tuple)) else 0


def newest_file(folder: Path):
    files = [p for p in folder.rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else folder


def fill(folder: Path, write, needs=0):
    """<folder>.tmp, filled by write(tmp); removed again if write fails (a full disk is one line)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException as e:
        failed = newest_file(tmp)  # the file being written when it failed
        shutil.rmtree(tmp, ignore_errors=True)
        full = disk_full(e, failed, needs) if isinstance(e, Exception) else None
        if full:
            raise full from None
        raise
    return tmp


def swap(folder: Path):
    """<folder>.tmp in place of <folder>: two renames, then the old one deleted (`recover` finishes a swap
    that a kill cut anywhere)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    if old.exists():  # a leftover of a kill during its removal: never let it block the swap
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def replace_folder(folder: Path, write):
    """Call write(tmp) to fill a new folder beside `folder`, then swap it in."""
    fill(folder, write)
    swap(folder)


def recover(out: Path):
    """The rule of the module docstring, for best/ and last/ of the run folder `out`."""
    for name in ("best", "last"):
        folder, tmp, old = out / name, out / (name + ".tmp"), out / (name + ".old")
        if not folder.exists() and old.exists():
            old.rename(folder)  # the swap was cut between its renames: the old one is complete
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)
    (out / "log.jsonl.tmp").unlink(missing_ok=True)
    (out / "run.json.tmp").unlink(missing_ok=True)


def save_checkpoint(model, tokenizer, cfg, folder: Path):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_sentence_transformers(model, folder, embedding_pooler(cfg.pooler, cfg.mlp_only_train))
    (folder / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))


def save_state(folder, model, optimizer, schedule, state):
    write_safetensors(model.state_dict(), str(folder / "model.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
               folder / "optimizer.pt")
    (folder / "state.json").write_text(json.dumps(state, indent=1))
