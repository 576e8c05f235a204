"""What the demo's tests serve: run folders as train.py and ablate.py leave them (one good, one with a
damaged log.jsonl, one not yet evaluated, one whose log is a link out, an ablation report, links that lead
out) and a small corpus."""
import json
import os
import shutil

from data import REPO

CORPUS = ["A man is playing a guitar.", "A woman is slicing an onion.", "Two dogs run through a field.",
          "The stock market fell sharply today.", "A child is riding a bicycle.", "Someone plays the piano.",
          "A cat sleeps on a warm windowsill.", "Share prices dropped on Monday.", "A chef chops vegetables.",
          "Birds fly over the lake at dawn.", "A boy kicks a football.", "The train arrives at noon."]
RECORDS = [{"step": 0, "loss": None, "lr": 3e-05, "stsb_dev": 79.7, "align": 0.10, "uniform": -1.74,
            "nonfinite": 0, "seconds": 7.3},
           {"step": 25, "loss": 0.047, "lr": 2.2e-05, "stsb_dev": 83.6, "align": 0.16, "uniform": -2.61,
            "nonfinite": 0, "seconds": 28.3},
           {"step": 50, "loss": 0.031, "lr": 1.5e-05, "stsb_dev": 84.1, "align": 0.17, "uniform": -2.70,
            "nonfinite": 0, "seconds": 49.0}]


def make_site(tmp):
    """tmp/corpus.txt, tmp/runs (what the demo may serve) and tmp/outside (what it must not)."""
    (tmp / "corpus.txt").write_text("\n".join(CORPUS) + "\n")
    runs, outside = tmp / "runs", tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not to be served\n")
    (outside / "log.jsonl").write_text(json.dumps(RECORDS[0]) + "\n")
    good = runs / "quick"
    good.mkdir(parents=True)
    (good / "run.json").write_text(json.dumps({"config": {"dropout": 0.1, "temp": 0.05}}))
    (good / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    damaged = runs / "damaged"
    damaged.mkdir()
    (damaged / "log.jsonl").write_text(json.dumps(RECORDS[0]) + "\n" + '{"step": 25, "loss": 0.0\n')
    (runs / "starting").mkdir()
    (runs / "starting" / "run.json").write_text(json.dumps({"config": {}}))
    (runs / "linked").mkdir()
    os.symlink(outside / "log.jsonl", runs / "linked" / "log.jsonl")  # a run whose log lies elsewhere
    for suffix in (".md", ".json", ".png"):  # ablate.py's report of Table 3
        shutil.copy(REPO / "results" / f"table3{suffix}", runs / f"table3{suffix}")
    os.symlink(outside / "secret.txt", runs / "secret.txt")
    os.symlink(outside, runs / "elsewhere")
    return tmp / "corpus.txt", runs
