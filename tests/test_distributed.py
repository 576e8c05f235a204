"""torchrun: several processes train exactly as one process holding the whole batch (gloo, on the CPU)."""
import json
import subprocess
import sys

import pytest

from formats.checkpoint import read_safetensors
from data import REPO

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def test_gradient_through_the_gathered_negatives(tmp_path):
    run = subprocess.run(TORCHRUN + ["tests/distributed_gradients.py", str(tmp_path / "g.json")], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    for rank in json.loads((tmp_path / "g.json").read_text()):
        for case in ("cls", "avg"):  # triplets through the MLP; pairs through avg with dropout on
            scale = rank[case]["grad_scale"]
            ours, authors = rank[case]["ours"], rank[case]["authors"]
            # = one process, whole batch, same masks
            assert ours["loss"] < 1e-6 and ours["grad"] < 1e-5 * scale
            assert authors["loss"] < 1e-6  # the same loss...
            assert authors["grad"] > 0.05 * scale  # ...but not its gradient
        assert rank["views_differ"] and rank["processes_differ"]  # each view and each process: its own masks


# No dropout (each process draws masks of its own); or every kind set to 0, so that --view-dropout's two
# passes (the anchors, then the other two blocks) run through DistributedDataParallel at no rate. STS-B dev:
# ranks of 1,500 cosines, where weights equal to 1e-7 may swap near-tied pairs (two passes: 3e-4 measured).
DROPOUT = {"none": (["--dropout", "0"], 1e-4),
           "view-dropout": (["--hidden-dropout", "0", "--attention-dropout", "0", "--embedding-dropout", "0",
                             "--view-dropout", "0.1", "0"], 1e-3)}


@pytest.mark.parametrize("dropout", DROPOUT)
def test_torchrun_run_equals_single_process_run(dropout, tiny_checkpoint, data_root, tmp_path):
    # --pooler avg: BERT's pooler takes no part (it crashed DistributedDataParallel at step 2 before).
    flags, tolerance = DROPOUT[dropout]
    args = ["train.py", "--preset", "quick-sup", "--model", tiny_checkpoint, "--max-steps", "4",
            "--eval-steps", "4", "--batch-size", "16", "--pooler", "avg", "--precision", "fp32", "--no-test",
            "--data-dir", str(data_root)] + flags
    for command, out in ((TORCHRUN, "A"), ([sys.executable], "B")):
        run = subprocess.run(command + args + ["--output-dir", str(tmp_path / out)], cwd=REPO,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
    logs = {out: [json.loads(line) for line in (tmp_path / out / "log.jsonl").read_text().splitlines()]
            for out in "AB"}
    assert [r["step"] for r in logs["A"]] == [r["step"] for r in logs["B"]] == [0, 4]
    assert abs(logs["A"][-1]["loss"] - logs["B"][-1]["loss"]) <= 1e-5
    assert abs(logs["A"][-1]["stsb_dev"] - logs["B"][-1]["stsb_dev"]) <= tolerance
    a, b = (read_safetensors(str(tmp_path / out / "best" / "model.safetensors")) for out in "AB")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    assert logs["A"][-1]["stsb_dev"] != logs["A"][0]["stsb_dev"]  # it did train
