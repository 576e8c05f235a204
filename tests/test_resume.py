"""A run cut anywhere and resumed ends as the same run uncut: Ctrl-C, SIGTERM or kill -9 at a step, in the
step-0 evaluation, inside each file's write of a save and between the renames of a save; then --resume, in
the folder moved elsewhere, gives log.jsonl (its seconds aside), best/ and last.pt of the uncut run
(conftest.finished_run). The cuts are made by tests/helpers/cut_train.py; a full disk: test_run_folder.py."""
import pytest

from helpers.runs import assert_same_run, log_without_seconds, resume, train_cli


@pytest.fixture(scope="module")
def best_step(finished_run):
    """A save after step 0 that writes best/ too: the first evaluation better than all before it."""
    log = log_without_seconds(finished_run[0])
    better = [r["step"] for i, r in enumerate(log)
              if i and r["stsb_dev"] > max(x["stsb_dev"] for x in log[:i])]
    assert better, "the reference run has no save after step 0 that writes best/"
    return better[0]


SAVE = None  # the step of a save that writes best/ (best_step); the previous save is 4 steps before
CUTS = [  # (how, where, the step cut, --resume goes on after the step: None = starts at step 0)
    ("ctrl-c", "evaluation", 0, None),
    ("ctrl-c", "step", 2, 0),
    ("sigterm", "step", 2, 0),  # `kill`: as Ctrl-C, with exit status 143
    ("ctrl-c", "in last.pt", SAVE, -4),
    ("kill", "in best/model.safetensors", SAVE, -4),
    ("kill", "in last.pt", SAVE, -4),
    ("kill", "in log.jsonl", SAVE, -4),
    ("kill", "after best/config.json", SAVE, -4),  # best/ half renamed: a mix of two saves, last.pt the old
    ("kill", "after best/model.safetensors", SAVE, -4),  # best/ new, last.pt the old
    ("kill", "after last.pt", SAVE, 0),  # last.pt new, log.jsonl a save behind
]


@pytest.mark.parametrize("how, where, step, resumed_after", CUTS, ids=[f"{c[0]} {c[1]}" for c in CUTS])
def test_a_cut_run_resumed_ends_as_the_uncut_run(how, where, step, resumed_after, finished_run, best_step,
                                                 tmp_path):
    reference, args = finished_run
    if step is SAVE:
        step, resumed_after = best_step, best_step + resumed_after
    out, moved = tmp_path / "cut", tmp_path / "moved" / "run"
    cut = train_cli(args + ["--output-dir", str(out)], [how, where, str(step)])
    assert "Traceback" not in cut.stderr, cut.stderr[-2000:]
    if how == "kill":
        assert cut.returncode == -9, cut.stderr[-2000:]
    else:  # one line after the progress bar: what is kept, and how to go on
        assert cut.returncode == (130 if how == "ctrl-c" else 143), cut.stderr[-2000:]
        message = cut.stderr.strip().splitlines()[-1]
        assert message == "interrupted: nothing is lost; continue with the same command and --resume"
    moved.parent.mkdir()
    out.rename(moved)  # the run folder can move (another disk, another name): it is the same run
    resumed = resume(args + ["--output-dir", str(moved)])  # in this process: its imports are made
    said = next((line for line in resumed.splitlines() if line.startswith("resuming")), None)
    assert said == (None if resumed_after is None else f"resuming {moved} after step {resumed_after}")
    assert_same_run(moved, reference)
