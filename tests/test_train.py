"""Training as train.py runs it: dropout on the compiled GPU path, the training files, presets and flags, and
whole (tiny) training runs. The method's formulas are tested in test_simcse.py."""
import json
import os

import pytest
import torch
import torch.nn.functional as F
import transformers

import data
from formats import training_files
from formats import senteval
from bert import BertConfig, BertModel
from formats.tokenizer import load_tokenizer
from simcse import contrastive_loss, embed_views, pool
from infra.config import PRESETS, TrainConfig, parse_args
from train import DROPOUT, step_seed, train

# --- Two views on the GPU path (the formulas and the views themselves: test_simcse.py) ----------------

@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return BertModel.from_pretrained(minilm_dir), load_tokenizer(minilm_dir)


def test_dropout_stays_fresh_in_a_compiled_fixed_shape_step(minilm_dir):
    """What train.py runs on a GPU (torch.compile, every batch padded to max_length, no packing) keeps dropout
    the augmentation: two views differ, two steps differ, the same step's seed repeats, p = 0 gives equal
    views."""
    dropout_seed = lambda seed, rank, step: step_seed(seed, rank, step, DROPOUT)  # as train.py
    tokenizer = load_tokenizer(minilm_dir)
    batch = tokenizer(["A man is playing a guitar.", "Two dogs run through a field."] * 2, 32,
                      pad_to_max_length=True)
    assert batch["input_ids"].shape == (4, 32)

    def compiled(p):
        torch.manual_seed(0)
        model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64))
        model.set_dropout(p)
        eager = embed_views(model.eval(), batch, 2, "cls_before_pooler")
        return torch.compile(model).train(), eager

    def step(model, seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return embed_views(model, batch, 2, "cls_before_pooler")
    model, _ = compiled(0.1)
    z1, z1_again, z2 = (step(model, dropout_seed(42, 0, 1)), step(model, dropout_seed(42, 0, 1)),
                        step(model, dropout_seed(42, 0, 2)))
    assert not torch.allclose(z1[0], z1[1])  # two views, two masks
    assert not torch.allclose(z1, z2)  # the next step, new masks
    assert torch.equal(z1, z1_again)  # the same (seed, process, step): the same masks (resume)
    model, eager = compiled(0.0)
    z = step(model, 0)
    assert torch.equal(z[0], z[1]) and (z - eager).abs().max() < 1e-5  # no dropout: one view, as eager


# --- Training files -----------------------------------------------------------------------------

def test_sentence_file_skips_and_counts_blank_lines(tmp_path):
    (tmp_path / "wiki.txt").write_text("First sentence.\n\n   \nSecond one.\r\n")
    examples, skipped = training_files.read(tmp_path / "wiki.txt")
    assert (examples == [("First sentence.", "First sentence."), ("Second one.", "Second one.")]
            and skipped == 2)


def test_nli_csv(tmp_path):
    (tmp_path / "nli.csv").write_text('sent0,sent1,hard_neg\n"A man, tall.",A man.,A woman.\n\n')
    examples, skipped = training_files.read(tmp_path / "nli.csv")
    assert examples == [("A man, tall.", "A man.", "A woman.")] and skipped == 1


def test_csv_row_with_wrong_column_count_names_file_and_line(tmp_path):
    path = tmp_path / "nli.csv"
    path.write_text("sent0,sent1,hard_neg\na,b,c\nd,e\n")
    with pytest.raises(data.DataError,
                       match=rf"{path}:3: expected 3 columns \(sent0,sent1,hard_neg\), found 2"):
        training_files.read(path)


@pytest.mark.parametrize("columns", [2, 3])
def test_an_unclosed_quote_refuses_the_file_naming_its_own_line(columns, tmp_path):
    path = tmp_path / "nli.csv"
    rows = [",".join(["sent0", "sent1", "hard_neg"][:columns])] + [
        ",".join(f"{c}{i}" for c in "abc"[:columns]) for i in range(1, 1000)]
    rows[901] = 'a,"b' + ",c" * (columns - 2)  # line 902; before, it swallowed the 98 lines after it
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(data.DataError, match=rf"{path}:902: .*quote"):
        training_files.read(path)
    rows[901], rows[950] = 'a,"b', 'c",d' + ",e" * (columns - 2)  # a quote closed 49 lines later
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(data.DataError, match=rf"{path}:902: a quoted field runs on to line 951"):
        training_files.read(path)


def test_a_fifo_is_not_a_training_file(tmp_path):
    os.mkfifo(tmp_path / "wiki.txt")  # reading it would wait for a writer forever
    with pytest.raises(data.DataError, match=rf"{tmp_path / 'wiki.txt'}: not a regular file"):
        data.training_file(str(tmp_path / "wiki.txt"))


def test_non_utf8_training_file_names_file_and_line(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_bytes("ok\nalso ok\n".encode() + b"caf\xe9\n")
    with pytest.raises(data.DataError, match=rf"{path}:3: not valid UTF-8"):
        training_files.read(path)


def test_presets_and_overrides():
    cfg, _ = parse_args(["--preset", "sup-bert", "--lr", "1e-5", "--fixed-mask"])
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.epochs, cfg.fixed_mask, cfg.mlp_only_train) == \
        ("bert-base-uncased", 512, 1e-5, 3, True, False)
    assert parse_args([])[0] == TrainConfig(**{**PRESETS["quick"]})
    assert parse_args(["--no-mlp-only-train"])[0].mlp_only_train is False
    assert (parse_args(["--epochs", "2"])[0].max_steps, parse_args(["--epochs", "2"])[0].epochs) == \
        (None, 2)  # an explicit --epochs wins over the preset's max_steps
    assert parse_args(["--epochs", "2", "--max-steps", "5"])[0].max_steps == 5  # both given: as documented


def test_seed_and_max_length_out_of_range_are_one_line(tiny_checkpoint):
    from infra.config import check, check_data_and_model
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match=rf"--seed {seed}: expected an integer in \[0, 2\*\*63\)"):
            check(TrainConfig(seed=seed))
    tokenizer, model = load_tokenizer(tiny_checkpoint), BertModel.from_pretrained(tiny_checkpoint)
    examples = [("a", "a")] * 64
    check_data_and_model(TrainConfig(max_length=512), "x.txt", examples, 1, tokenizer, model)
    with pytest.raises(ValueError, match="--max-length 100000: expected at most 512"):  # not capped silently
        check_data_and_model(TrainConfig(max_length=100000), "x.txt", examples, 1, tokenizer, model)


# --- A whole run, with a tiny random BERT so that it takes seconds --------------------------------

def test_supervised_run_logs_and_saves_a_transformers_checkpoint(tiny_checkpoint, data_root, tmp_path):
    (tmp_path / "nli.csv").write_text("sent0,sent1,hard_neg\n" + "".join(
        f"A man plays {i} guitars.,A person plays music.,A cat sleeps.\n" for i in range(20)))
    out = tmp_path / "run"
    result = train(TrainConfig(model=tiny_checkpoint, train_file=str(tmp_path / "nli.csv"),
                               output_dir=str(out), batch_size=8, max_steps=3, eval_steps=2,
                               mlp_only_train=False, data_dir=str(data_root)),
                   progress=False, test=False)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 2, 3] and log[0]["loss"] is None and log[-1]["lr"] == 0.0
    assert all({"stsb_dev", "align", "uniform", "loss", "lr", "seconds"} <= set(r) for r in log)
    assert result["best"]["stsb_dev"] == max(r["stsb_dev"] for r in log)

    ours = BertModel.from_pretrained(str(out / "best"))
    theirs, info = transformers.AutoModel.from_pretrained(out / "best", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    batch = load_tokenizer(str(out / "best"))(["A man plays a guitar.", "A cat sleeps on the mat."])
    with torch.no_grad():
        mlp = pool(ours(**batch), batch["attention_mask"], "cls")  # [CLS] -> the trained MLP (dense + tanh)
        assert (theirs(**batch).pooler_output - mlp).abs().max() < 1e-5
        cls = ours(**batch).last_hidden_state[:, 0]
        assert torch.allclose(mlp, torch.tanh(cls @ ours.pooler.dense.weight.T + ours.pooler.dense.bias),
                              atol=1e-6)
    # The MLP was re-initialised and trained, not the pre-trained pooler of the starting checkpoint.
    start = BertModel.from_pretrained(tiny_checkpoint)
    assert not torch.allclose(start.pooler.dense.weight, ours.pooler.dense.weight, atol=1e-3)


def test_cli_run_prints_the_test_table(tiny_checkpoint, data_root, tmp_path):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "train.py", "--model", tiny_checkpoint, "--max-steps", "2",
                          "--eval-steps", "1", "--batch-size", "8", "--output-dir", str(tmp_path / "run"),
                          "--data-dir", str(data_root)], cwd=data.REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "STSBenchmark" in run.stdout and "Avg." in run.stdout
    scores = json.loads((tmp_path / "run" / "test_scores.json").read_text())["scores"]
    assert set(scores) == set(senteval.STS_TASKS) | {"Avg"}


def test_missing_training_file_is_a_clear_error(tmp_path, data_root):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "train.py", "--train-file", str(tmp_path / "nope.txt"),
                          "--output-dir", str(tmp_path / "run"), "--data-dir", str(data_root)],
                         cwd=data.REPO, capture_output=True, text=True)
    assert run.returncode != 0 and "nope.txt" in run.stderr and "Traceback" not in run.stderr


def cosine_broadcast_loss(z, temp, weight):
    """The loss as the authors' cl_forward computes it (nn.CosineSimilarity broadcast over anchors x
    candidates), in chunks of anchors so that the test does not need the N x M x d tensor it used to
    build."""
    n, anchor, others = z.shape[1], z[0], z[1:].flatten(0, 1)
    logits = torch.cat([F.cosine_similarity(anchor[i:i + 32].unsqueeze(1), others.unsqueeze(0), dim=-1)
                        for i in range(0, n, 32)]) / temp
    if z.shape[0] == 3:
        logits = logits + weight * F.one_hot(n + torch.arange(n), 2 * n)
    return F.cross_entropy(logits, torch.arange(n))


class LargestTensor(torch.utils._python_dispatch.TorchDispatchMode):
    """The most elements of any tensor an operator makes while the mode is on."""
    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_loss_is_a_similarity_matrix_not_an_n_m_d_tensor():
    """128 anchors x 256 candidates x 768: the same loss and gradient as the cosine broadcast, with nothing
    larger than the inputs made on the way (the broadcast makes an N x 2N x d tensor: 1.6 GB at sup-bert's
    batch of 512)."""
    torch.manual_seed(0)
    z = torch.randn(3, 128, 768, requires_grad=True)
    with LargestTensor() as mode:
        loss = contrastive_loss(z, 0.05, 1.0)
        loss.backward()
    assert mode.largest <= z.numel()
    ours = z.grad.clone()
    z.grad = None
    reference = cosine_broadcast_loss(z, 0.05, 1.0)
    reference.backward()
    assert abs(loss.item() - reference.item()) <= 1e-6
    assert (ours - z.grad).abs().max() <= 1e-6 * z.grad.abs().max() * 100


def test_fixed_mask_shares_one_mask_through_the_model(minilm):
    """Both views of --fixed-mask are one pass in train mode: the output of that same pass with that same
    seed, and not the eval-mode (dropout-free) embedding."""
    model, tokenizer = minilm
    sentences = ["A man is playing a guitar.", "Two dogs run through a field."]
    model.set_dropout(0.1)
    model.train()
    with torch.no_grad():
        torch.manual_seed(7)
        z = embed_views(model, tokenizer(sentences * 2), 2, "cls_before_pooler", fixed_mask=True)
        torch.manual_seed(7)
        one_pass = model(**tokenizer(sentences)).last_hidden_state[:, 0]
        clean = model.eval()(**tokenizer(sentences)).last_hidden_state[:, 0]
    assert torch.equal(z[0], one_pass) and torch.equal(z[1], one_pass)  # one mask, both views
    assert not torch.allclose(one_pass, clean, atol=1e-3)  # a mask was applied


def test_learning_rate_decays_linearly_to_zero(tiny_checkpoint, data_root, tmp_path):
    result = train(TrainConfig(model=tiny_checkpoint, output_dir=str(tmp_path / "run"), batch_size=8,
                               max_steps=4, eval_steps=1, lr=4e-5, data_dir=str(data_root)),
                   progress=False, test=False)
    lrs = [(r["step"], r["lr"]) for r in result["log"]]  # the rate of the next update, after each evaluation
    assert lrs == [(0, pytest.approx(4e-5)), (1, pytest.approx(3e-5)), (2, pytest.approx(2e-5)),
                   (3, pytest.approx(1e-5)), (4, 0.0)]


def test_fixed_mask_with_triplets_is_a_one_line_error(tmp_path, data_root):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "train.py", "--preset", "quick-sup", "--fixed-mask", "--output-dir",
                          str(tmp_path / "run"), "--data-dir", str(data_root)],
                         cwd=data.REPO, capture_output=True, text=True)
    message = run.stderr.strip()
    assert (run.returncode == 1 and "\n" not in message and "--fixed-mask" in message
            and "3 columns" in message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("path", ["cpu", "gpu's, on a cpu"])
def test_what_trains_is_bert_py_as_written(path, tiny_checkpoint, data_root, tmp_path, monkeypatch):
    """BertModel.forward, BertLayer.forward and BertSelfAttention.forward of bert.py run in training mode at
    every step of train.py: on a CPU's path, and on a GPU's (every batch padded to max_length) as far as it
    runs on a CPU. A student's edit of bert.py is what trains."""
    import bert
    from infra import speed
    import train as train_module
    calls, now = [], {"step": None}
    for cls in (bert.BertModel, bert.BertLayer, bert.BertSelfAttention):
        def spy(self, *args, _forward=cls.forward, _name=cls.__name__, **kwargs):
            if self.training:
                calls.append((now["step"], _name))
            return _forward(self, *args, **kwargs)
        monkeypatch.setattr(cls, "forward", spy)
    update = train_module.update

    def counted(parts, cfg, sentences, n_views, s):
        now["step"] = s
        return update(parts, cfg, sentences, n_views, s)
    monkeypatch.setattr(train_module, "update", counted)
    if path != "cpu":
        init = speed.Speed.__init__

        def gpu_like(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.fixed_shapes = True  # as on a GPU (its compile aside)
        monkeypatch.setattr(speed.Speed, "__init__", gpu_like)
    cfg = TrainConfig(model=tiny_checkpoint, max_steps=3, eval_steps=3, batch_size=8,
                      output_dir=str(tmp_path), data_dir=str(data_root))
    train(cfg, progress=False, test=False)
    for s in (1, 2, 3):
        names = [name for at, name in calls if at == s]
        counts = [names.count(n) for n in ("BertModel", "BertLayer", "BertSelfAttention")]
        assert counts == [1, 2, 2]  # one forward pass of both views, through the tiny BERT's 2 layers
    assert all(at is not None for at, _ in calls)  # nothing else runs in training mode


def test_a_dev_file_of_stsb_dev_gives_the_same_run(tiny_checkpoint, data_root, tmp_path):
    """--dev-file with STS-B dev written as a file of one's own pairs: the run of STS-B dev, number for
    number (the score logged as "dev"), the same weights; pinned in run.json by content, so that --resume
    with the file changed is refused."""
    from helpers.pairs import write_pairs
    from helpers.runs import resume_state
    write_pairs(tmp_path / "dev.csv", data_root)
    runs = {}
    for name, dev_file in (("stsb", None), ("file", str(tmp_path / "dev.csv"))):
        cfg = TrainConfig(model=tiny_checkpoint, output_dir=str(tmp_path / name), batch_size=8, max_steps=4,
                          eval_steps=2, data_dir=str(data_root), dev_file=dev_file)
        runs[name] = train(cfg, progress=False, test=False)["log"], resume_state(tmp_path / name)
    renamed = lambda r: {k.replace("stsb_dev", "dev"): v for k, v in r.items() if k != "seconds"}
    assert [renamed(r) for r in runs["stsb"][0]] == [renamed(r) for r in runs["file"][0]]
    assert runs["stsb"][1]["model"] == runs["file"][1]["model"]
    pinned = json.loads((tmp_path / "file" / "run.json").read_text())["data"]["dev_file"]
    assert pinned["bytes"] == (tmp_path / "dev.csv").stat().st_size
    with open(tmp_path / "dev.csv", "a") as f:
        f.write("1.0,A new pair.,Another one.\n")
    with pytest.raises(ValueError, match=r"dev.csv: not the dev file the run in .* started with"):
        train(cfg, progress=False, test=False, resume=True)
