"""A run's --output-dir: run.json (settings, data), best/, last.pt (weights, AdamW, schedule, step, log, best:
what --resume needs), log.jsonl, test_scores.json, .lock. A save writes best/'s files (when better; weights
last), last.pt (the commit point) and log.jsonl, then renames them over the old: a full disk keeps the last
save whole. --resume rewrites log.jsonl from last.pt and trains the steps after it again, with the same data
order and masks (train.py): a run cut anywhere ends as uncut. No folder is ever renamed."""
import io
import json
import time
from hashlib import sha256
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from formats.files import read_text, write_file, write_files
from formats.st_files import checkpoint_files
from infra.cli import expect, json_lines, json_text
from infra.config import differences, experiment

RESULTS = ("run.json", "last.pt", "log.jsonl", "test_scores.json", "transfer_scores.json", "best")
FULL = "; the previous save is whole: free space, then continue with --resume"


class RunFolder:
    def __init__(self, cfg, resume=False, overwrite=False, master=True):
        self.out, self.cfg, self.resume, self.overwrite = Path(cfg.output_dir), cfg, resume, overwrite
        self.master, self.last, self.data = master, Path(cfg.output_dir) / "last.pt", {}
        self.check()  # checks only, which create and change nothing: start() takes the folder, checks again

    def check(self):
        held = [n for n in RESULTS if (self.out / n).is_file() or any(self.out.glob(n + "/*"))]
        if self.resume and self.last.exists():  # the same settings and data go on, wherever they are now
            config, data = read_run(self.out)
            if changed := differences(config, self.cfg):
                raise ValueError(f"{self.out} was trained with another configuration; --resume needs the "
                                 f"same ({'; '.join(changed)})")
            for key, pin in self.data.items():  # known in start(): compared by content, not by path
                was = data.get(key) or {}
                if differ := [f"{k} {was.get(k)} -> {v}" for k, v in pin.items()
                              if k != "path" and v != was.get(k)]:
                    raise ValueError(f"{pin['path']}: not the {key.replace('_', ' ')} the run in {self.out} "
                                     f"started with ({was.get('path')}; {', '.join(differ)})")
        elif held and not (self.overwrite or self.resume and "run.json" in held):  # (nothing saved: a start)
            raise FileExistsError(f"{self.out} holds a run ({', '.join(held)}): continue it with --resume, "
                                  f"start over with --overwrite (deletes its results), or use another folder")

    def start(self, model, optimizer, schedule, train_file, dev_file):
        """Step 0's state, or last.pt's with --resume; train_file: (path, examples), dev_file: STS-B dev's or
        --dev-file's (pinned as stsb_dev or dev_file)."""
        dev = "stsb_dev" if self.cfg.dev_file is None else "dev_file"
        self.data = {"train_file": pin(train_file[0], examples=train_file[1]), dev: pin(dev_file)}
        self.train_file, self.state = train_file, {"step": 0, "best": None, "log": [], "nonfinite": 0}
        if self.master:
            self.out.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(self.out / ".lock", timeout=0)  # released when this process ends, however
            try:
                self.lock.acquire()
            except Timeout:
                raise OSError(f"{self.out} is in use by another process: wait for it to end, or choose "
                              f"another --output-dir") from None
            self.check()  # again, now with the data: another process may have run here since the first
        if self.resume and self.last.exists():
            try:  # tensors and numbers, no code
                self.state = torch.load(self.last, map_location="cpu", weights_only=True)
                for name, part in (("model", model), ("optimizer", optimizer), ("schedule", schedule)):
                    part.load_state_dict(self.state.pop(name))
                expect(self.state, step=int, log=[{"seconds": float}], best=dict | None, nonfinite=int)
            except Exception as e:  # truncated, or not train.py's: torch's advice to unpickle is no help
                why = (str(e) or repr(e)).splitlines()[0][:100]
                raise ValueError(f"{self.last}: cannot be read ({why}); --overwrite starts over") from None
            if self.master:  # log.jsonl as last.pt has it (a save may have been cut before the log)
                write_file(self.out / "log.jsonl", json_lines(self.state["log"]))  # strict JSON: NaN as null
                print(f"resuming {self.out} after step {self.state['step']}")
        elif self.master:  # from step 0, nothing of a run before (--overwrite, or cut before its first save)
            self.clear()
        self.clock = time.perf_counter() - (self.state["log"][-1]["seconds"] if self.state["log"] else 0)
        return self.state

    def clear(self):  # in an order that, cut anywhere, leaves what the same command takes up
        self.last.unlink(missing_ok=True)  # first: the old state is never resumed with the new settings
        write_file(self.out / "run.json", json_text({"config": experiment(self.cfg), "data": self.data}, 1))
        order = lambda p: (p.name != "model.safetensors", p.is_dir(), -len(p.parts))  # weights first
        for path in [self.out / n for n in RESULTS[2:-1]] + sorted(self.out.glob("best/**/*"), key=order):
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)  # a link best/ stays a link

    def save(self, step, means, metrics, nonfinite, model, tokenizer, optimizer, schedule):
        """Log an evaluation (means: the steps', guard.py; metrics: the dev set's), keep the best, save."""
        record = {"step": step, **means, "lr": schedule.get_last_lr()[0], **metrics,
                  "nonfinite": nonfinite, "seconds": round(time.perf_counter() - self.clock, 1)}
        if step == 0:  # what was trained on
            record.update(train_file=str(self.train_file[0]), train_examples=self.train_file[1])
        record = json.loads(json.dumps(record))  # as log.jsonl has it: numbers that weights_only loads
        key = self.cfg.dev_key  # the score that selects: STS-B dev's, or --dev-file's
        better = (best := self.state["best"]) is None or record[key] > best[key]  # never a NaN
        new = {"step": step, "best": record if better else best, "log": self.state["log"] + [record],
               "nonfinite": nonfinite}  # updates skipped so far (guard.py)
        files = checkpoint_files(model, tokenizer, self.cfg, self.out / "best") if better else {}
        state = io.BytesIO()  # bytes, written as every file is: a full disk is one OSError naming last.pt
        torch.save({**new, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict()}, state)
        log = json_lines(new["log"])  # strict JSON: a NaN as null, named in the record's "nan_or_inf"
        write_files({**files, self.last: state.getbuffer(), self.out / "log.jsonl": log}, FULL)
        self.state.update(new)  # the same dict train.py holds


def read_run(folder):  # (config, data) of a run folder's run.json
    try:
        run = json.loads(read_text(Path(folder) / "run.json"))
        return dict(run["config"]), dict(run["data"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{Path(folder) / 'run.json'}: not a run.json of train.py ({e})") from None


def pin(path, **more):  # what identifies a data file: its content (and where it was)
    data = Path(path).read_bytes()
    return {"path": str(Path(path).resolve()), "bytes": len(data), **more, "sha256": sha256(data).hexdigest()}
