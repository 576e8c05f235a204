"""--micro-batch K (gradcache.py): the update of the whole batch, K examples at a time. Its gradient equals
one autograd pass over the whole batch that draws the same dropout masks (every pooler, pairs and triplets,
--fixed-mask, --view-dropout, --do-mlm), the plain step's with dropout 0, and one process's plain run under
torchrun; a micro-batched run resumes bit for bit; a bad K is one line before any work."""
import json
import random
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from extras import gradcache
import simcse
from bert import BertModel
from formats.checkpoint import read_safetensors
from infra.config import TrainConfig, check, check_data_and_model
from data import REPO
from extras.mlm import MaskedLM
from simcse import contrastive_loss, embed_views
from infra.speed import Speed
from test_distributed import TORCHRUN
from formats.tokenizer import load_tokenizer
from helpers.runs import kill_and_resume, train_cli

WORDS = ("a man woman dog cat child plays runs eats sleeps the guitar field grass ball quickly slowly red "
         "blue under over house table near").split()
N, K = 64, 16  # examples in the batch, examples a chunk


def setup(folder, n_views, dropout, pooler="cls", do_mlm=False):
    """(model as train.py runs it on a CPU in fp32, tokenised batch of N examples, MaskedLM or None)."""
    model, tokenizer = BertModel.from_pretrained(folder), load_tokenizer(folder)
    model.set_dropout(dropout)
    if pooler != "cls":
        model.pooler.requires_grad_(False)  # as train.py: unused, untrained
    fast = Speed(torch.device("cpu"), compile=False, precision="fp32")
    mlm = MaskedLM(model, tokenizer, folder) if do_mlm else None
    model = fast.prepare(model).train()  # FastDropout; bert.py packs the real tokens
    rng = random.Random(0)
    n_sentences = N if n_views == 2 else 3 * N
    sentences = [" ".join(rng.choices(WORDS, k=rng.randint(2, 14))) for _ in range(n_sentences)]
    sentences = sentences * 2 if n_views == 2 else sentences  # pairs: each sentence twice, view by view
    return model, tokenizer(sentences, 32), mlm, fast


def grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def one_pass(model, batch, n_views, cfg, mlm, mlm_seed):
    """The loss over the whole batch in one autograd graph, its chunks of K embedded one after the other (so
    from the same random state as the cached step: the same masks), then the MLM passes."""
    n = len(batch["input_ids"]) // n_views
    rows = [torch.cat([torch.arange(v * n + c, v * n + c + K) for v in range(n_views)])
            for c in range(0, n, K)]  # chunk c: examples c..c+K-1 of every view
    part = lambda r: {name: t[r] for name, t in batch.items()}
    z = torch.cat([embed_views(model, part(r), n_views, cfg.pooler, cfg.fixed_mask, cfg.views_dropout())
                   for r in rows], dim=1)
    loss = contrastive_loss(z, cfg.temp, cfg.hard_negative_weight)
    if mlm:
        masked, labels = mlm.masks(batch, mlm_seed)
        logits, targets = zip(*(mlm.predictions(model, part(r), masked[r], labels[r]) for r in rows))
        loss = loss + cfg.mlm_weight * F.cross_entropy(torch.cat(logits), torch.cat(targets))  # the mean
    loss.backward()
    return loss.detach()


CASES = {"pairs-cls": (2, dict(pooler="cls")), "pairs-avg": (2, dict(pooler="avg")),
         "triplets-hard-negatives": (3, dict(pooler="cls", hard_negative_weight=1.0)),
         "pairs-fixed-mask": (2, dict(pooler="cls", fixed_mask=True)),
         "pairs-view-dropout": (2, dict(pooler="cls", view_dropout=[0.1, 0.0], dropout_layers="top:1")),
         "pairs-mlm": (2, dict(pooler="cls", do_mlm=True)),
         "triplets-mlm": (3, dict(pooler="avg", hard_negative_weight=1.0, do_mlm=True))}


@pytest.mark.parametrize("case", CASES)
def test_cached_gradient_equals_one_pass_with_the_same_masks(case, tiny_checkpoint):
    n_views, kw = CASES[case]
    cfg = TrainConfig(micro_batch=K, **kw)
    model, batch, mlm, fast = setup(tiny_checkpoint, n_views, 0.1, cfg.pooler, cfg.do_mlm)
    torch.manual_seed(7)
    cached, _ = gradcache.cached_backward(model, batch, n_views, cfg, lambda z: z, fast.autocast, mlm, 3)
    after = torch.get_rng_state()
    ours = grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    reference = one_pass(model, batch, n_views, cfg, mlm, mlm_seed=3)
    expected = grads(model)
    assert ours.keys() == expected.keys() and (not cfg.do_mlm or any("lm_head" in k for k in ours))
    scale = max(g.abs().max().item() for g in expected.values())
    assert max((ours[k] - expected[k]).abs().max().item() for k in ours) <= 1e-5 * scale
    assert abs(cached.item() - reference.item()) <= 1e-5 * abs(reference.item())
    assert torch.equal(after, torch.get_rng_state())  # the random state goes on as after one pass


def test_without_replayed_masks_the_gradient_is_another(tiny_checkpoint, monkeypatch):
    """Why the masks are replayed: the second pass with new masks gives the gradient of no loss."""
    cfg = TrainConfig(micro_batch=K)
    model, batch, _, fast = setup(tiny_checkpoint, 2, 0.1)
    torch.manual_seed(7)
    gradcache.cached_backward(model, batch, 2, cfg, lambda z: z, fast.autocast)
    replayed = grads(model)
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(gradcache, "set_rng_state", lambda state, device: None)  # draws new masks
    torch.manual_seed(7)
    gradcache.cached_backward(model, batch, 2, cfg, lambda z: z, fast.autocast)
    fresh = grads(model)
    scale = max(g.abs().max().item() for g in replayed.values())
    assert max((fresh[k] - replayed[k]).abs().max().item() for k in fresh) > 0.05 * scale


@pytest.mark.parametrize("n_views,kw", [(2, dict(pooler="cls", do_mlm=True)),
                                        (3, dict(pooler="avg", hard_negative_weight=1.0))])
def test_with_dropout_0_the_update_is_the_plain_steps(n_views, kw, tiny_checkpoint):
    model, batch, mlm, fast = setup(tiny_checkpoint, n_views, 0.0, kw["pooler"], kw.get("do_mlm", False))
    params = [p for p in model.parameters() if p.requires_grad]
    result = {}
    for micro_batch in (None, K):  # train.py's step, up to the clipped gradients AdamW gets
        cfg = TrainConfig(micro_batch=micro_batch, dropout=0.0, **kw)
        model.zero_grad(set_to_none=True)
        if micro_batch:
            loss, _ = gradcache.cached_backward(model, batch, n_views, cfg, lambda z: z, fast.autocast, mlm,
                                                5)
        else:
            with fast.autocast():
                loss, _ = simcse.loss(model, batch, n_views, cfg, None, mlm, 5)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        result[micro_batch] = grads(model), loss.item()
    (plain, plain_loss), (cached, cached_loss) = result[None], result[K]
    assert plain.keys() == cached.keys()
    scale = max(g.abs().max().item() for g in plain.values())
    assert max((plain[k] - cached[k]).abs().max().item() for k in plain) <= 1e-5 * scale
    assert abs(plain_loss - cached_loss) <= 1e-5 * plain_loss


def test_a_bad_micro_batch_is_one_line_before_any_work(tiny_checkpoint, tmp_path):
    for bad in (0, -2, 3):
        with pytest.raises(ValueError, match=rf"^--micro-batch {bad}: expected an integer of at least 1 that "
                                             r"divides --batch-size 8$"):
            check(TrainConfig(batch_size=8, micro_batch=bad))
    with pytest.raises(ValueError, match=r"^--micro-batch 8: .* each of 2 processes' 4 examples$"):
        check_data_and_model(TrainConfig(batch_size=8, micro_batch=8), "x.txt", [("a", "a")] * 8, 2, None,
                             None)
    run = train_cli(["--model", tiny_checkpoint, "--batch-size", "8", "--micro-batch", "3", "--output-dir",
                     str(tmp_path / "run")])
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0 and "--micro-batch 3" in run.stderr
    assert not (tmp_path / "run").exists()


def test_micro_batched_resume_after_kill_9_is_bit_identical(tiny_checkpoint, data_root, tmp_path):
    kill_and_resume(["--max-steps", "4", "--eval-steps", "2", "--batch-size", "8", "--micro-batch", "4",
                     "--no-test", "--model", tiny_checkpoint, "--data-dir", str(data_root)], tmp_path, 2)


def test_torchrun_micro_batched_run_equals_single_process_plain_run(tiny_checkpoint, data_root, tmp_path):
    args = ["train.py", "--preset", "quick-sup", "--model", tiny_checkpoint, "--max-steps", "2",
            "--eval-steps", "2", "--batch-size", "8", "--dropout", "0", "--precision", "fp32", "--no-test",
            "--data-dir", str(data_root)]
    for command, extra, out in ((TORCHRUN, ["--micro-batch", "2"], "A"), ([sys.executable], [], "B")):
        run = subprocess.run(command + args + extra + ["--output-dir", str(tmp_path / out)], cwd=REPO,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
    logs = {out: [json.loads(line) for line in (tmp_path / out / "log.jsonl").read_text().splitlines()]
            for out in "AB"}
    assert [r["step"] for r in logs["A"]] == [r["step"] for r in logs["B"]] == [0, 2]
    assert abs(logs["A"][-1]["loss"] - logs["B"][-1]["loss"]) <= 1e-5
    a, b = (torch.load(tmp_path / out / "last.pt", weights_only=True)["model"] for out in "AB")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    start = read_safetensors(f"{tiny_checkpoint}/model.safetensors")
    assert any((a[k] - start[k]).abs().max() > 1e-4 for k in start if k in a)  # it did train


def test_bench_reports_the_micro_batched_steps_time_and_memory_beside_the_plain_steps(tiny_checkpoint,
                                                                                         data_root):
    """python -m bench train --micro-batch K: both steps timed in processes of their own, the ratios of time
    and peak memory printed. The plain step's activations are 32x a chunk's (512 sentences, 16), so the
    micro-batched step's peak allocated memory is the smaller, however the 2 ms sampling falls."""
    run = subprocess.run([sys.executable, "-m", "bench", "train", "--model", tiny_checkpoint, "--batch-size",
                          "256", "--micro-batch", "8", "--steps", "1", "--warmup", "0", "--rounds", "1",
                          "--sides", "ours-fp32", "ours-fp32-micro", "--data-dir", str(data_root)],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = dict(re.findall(r"^(ours-fp32(?:-micro 8)?) +[\d.]+ +[\d.]+ +[\d.]+x +[\d.]+ MiB +([\d.]+) MiB",
                           run.stdout, re.M))  # side: its peak allocated memory
    assert float(rows["ours-fp32-micro 8"]) < float(rows["ours-fp32"]), run.stdout
    summary = next(line for line in run.stdout.splitlines() if line.startswith("ours fp32 --micro-batch 8: "))
    assert "x the plain step's time" in summary and "x its peak memory" in summary
