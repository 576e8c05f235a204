"""What a training run writes in its --output-dir, written so that nothing is ever lost:

    run.json           the run's configuration, written when it starts (what --resume must match)
    log.jsonl          one line per evaluation on STS-B dev
    best/              the best checkpoint so far (Hugging Face + sentence-transformers layout)
    last/              everything needed to resume: weights, AdamW and schedule state, the log
    test_scores.json   the best checkpoint on the seven STS test sets, at the end

Each file and folder is written beside the old one and renamed over it, so a kill at any moment leaves a
complete one; --resume then ends with the same bytes as an uninterrupted run. A folder that holds a run is
never written over by accident: a new run there refuses, naming --resume and --overwrite.
"""
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from checkpoint import read_safetensors, save_sentence_transformers, write_safetensors
from config import experiment
from files import write_file
from simcse import embedding_pooler

RESULTS = ("run.json", "log.jsonl", "best", "last", "test_scores.json", "transfer_scores.json")


class RunFolder:
    def __init__(self, cfg, resume=False, overwrite=False, master=True):
        """Checks only: nothing is created or changed until start()."""
        self.out, self.cfg, self.master, self.overwrite = Path(cfg.output_dir), cfg, master, overwrite
        self.resume = resume
        if self.out.exists() and not self.out.is_dir():
            raise FileExistsError(f"--output-dir {self.out}: a file, not a folder")
        held = [name for name in RESULTS if (self.out / name).exists()]
        if resume:
            saved = self.saved_config()
            if saved is None:
                raise FileNotFoundError(f"{self.out}: nothing to resume (no run.json or last/state.json); "
                                        "run without --resume to start")
            now = experiment(cfg)
            changed = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
                       if saved.get(k) != now.get(k)]
            if changed:
                raise ValueError(f"{self.out} was trained with another configuration; --resume needs the "
                                 f"same ({'; '.join(changed)})")
        elif held and not overwrite:
            raise FileExistsError(f"{self.out} holds a run ({', '.join(held)}): continue it with --resume, "
                                  f"start over with --overwrite (deletes its results), or choose another "
                                  f"--output-dir")

    def saved_config(self):
        recover(self.out / "last")
        for path in (self.out / "last" / "state.json", self.out / "run.json"):
            if path.exists():
                return json.loads(path.read_text())["config"]
        return None

    def start(self, model, optimizer, schedule, train_file):
        """The state to go on from: step 0, or what last/ holds with --resume."""
        self.state = self.load(model, optimizer, schedule)
        self.train_file = train_file  # (path, examples) as found: data.training_file may substitute or fetch
        last = self.state["log"][-1] if self.state["log"] else {}
        self.clock = time.perf_counter() - last.get("seconds", 0)  # seconds of training, over resumes
        return self.state

    def nonfinite(self):  # updates skipped so far (by guard.py)
        return self.state["log"][-1]["nonfinite"] if self.state["log"] else 0

    def load(self, model, optimizer, schedule):
        if self.master:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.overwrite:  # the old run's results go, all of them: none may describe the new model
                for name in RESULTS:
                    for path in (self.out / name, self.out / (name + ".tmp"), self.out / (name + ".old")):
                        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            if not (self.out / "run.json").exists():
                write_file(self.out / "run.json", json.dumps({"config": experiment(self.cfg)}, indent=1))
        recover(self.out / "best")
        if not (self.resume and (self.out / "last" / "state.json").exists()):
            return {"config": experiment(self.cfg), "step": 0, "best": None, "log": []}
        last = self.out / "last"
        model.load_state_dict(read_safetensors(str(last / "model.safetensors")))
        saved = torch.load(last / "optimizer.pt", weights_only=True)  # tensors and numbers, no code
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = json.loads((last / "state.json").read_text())
        if self.master:
            print(f"resuming {self.out} after step {state['step']}")
        return state

    def save(self, step, loss, metrics, nonfinite, model, tokenizer, optimizer, schedule):
        """Log an evaluation; keep the checkpoint if it is the best; save what resuming needs."""
        state = self.state
        record = {"step": step, "loss": loss, "lr": schedule.get_last_lr()[0], **metrics,
                  "nonfinite": nonfinite, "seconds": round(time.perf_counter() - self.clock, 1)}
        if step == 0:  # what was trained on
            record.update(train_file=str(self.train_file[0]), train_examples=self.train_file[1])
        state["log"].append(record)
        if state["best"] is None or record["stsb_dev"] > state["best"]["stsb_dev"]:  # never a NaN score
            state["best"] = record
            replace_folder(self.out / "best", lambda tmp: save_checkpoint(model, tokenizer, self.cfg, tmp))
        state["step"] = record["step"]
        replace_folder(self.out / "last", lambda tmp: save_state(tmp, model, optimizer, schedule, state))
        write_file(self.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in state["log"]))

    def write(self, name, record):  # a JSON file of results, e.g. test_scores.json
        write_file(self.out / name, json.dumps(record, indent=2))


def replace_folder(folder: Path, write):
    """Call write(tmp) to fill a new folder beside `folder`, then swap it in, so that a crash at any moment
    leaves a complete folder: the old one, the new one, or the old one as <folder>.old (`recover`)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover(folder: Path):
    """Undo a swap that a crash cut between its two renames."""
    old = folder.with_name(folder.name + ".old")
    if old.exists() and not folder.exists():
        old.rename(folder)


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
