"""The dropout knobs (bert.BertModel.set_dropout, simcse.embed_views' view_dropout, train.py's
--hidden-dropout, --attention-dropout, --embedding-dropout, --dropout-layers, --view-dropout): each changes
what it says and nothing else, in the modules the CPU step runs (FastDropout); refused in one line before
any work; recorded in run.json and kept through kill -9 + --resume, with --micro-batch and a --dev-file.
And the signals of learning in log.jsonl (top1, pos_cos, neg_cos, grad_norm), against a recomputation from
the step's own embeddings and gradients."""
import json

import pytest
import torch
import torch.nn.functional as F

import simcse
import train
from bert import BertConfig, BertModel
from helpers.pairs import write_pairs
from helpers.runs import ARGS, kill_and_resume, log_without_seconds, train_cli
from infra.config import TrainConfig, check, check_data_and_model
from infra.speed import Speed
from simcse import embed_views

LAYERS = 4


@pytest.fixture()
def model():
    """A random 4-layer BERT as the CPU step runs it: every nn.Dropout swapped for a FastDropout."""
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=LAYERS,
                                num_attention_heads=2, intermediate_size=64))
    return Speed(torch.device("cpu"), compile=False, precision="fp32").prepare(bert).train()


def batch(n=6, length=9):
    torch.manual_seed(1)
    ids = torch.randint(5, 100, (n, length))
    mask = torch.ones_like(ids)
    mask[::2, 6:] = 0  # some padding
    return {"input_ids": ids, "attention_mask": mask}


def dropping(model, **flags):
    """The dropout modules that dropped something in one training pass with train.py's `flags` (each module's
    input against its output: where dropout keeps everything they are equal)."""
    model.set_dropout(**TrainConfig(**flags).dropout_of(0))  # as train.setup, after the swap
    changed, hooks = set(), []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Dropout):
            assert type(m).__name__ == "FastDropout"  # the knobs reach the swapped modules
            hooks.append(m.register_forward_hook(
                lambda m, args, out, name=name: changed.add(name) if not torch.equal(args[0], out) else None))
    with torch.no_grad():
        model(**batch())
    for h in hooks:
        h.remove()
    return changed


def sites(kind, layers=range(LAYERS)):
    names = {"attention": ["attention.self.dropout"],
             "hidden": ["attention.output.dropout", "output.dropout"]}
    return {f"encoder.layer.{i}.{n}" for i in layers for n in names[kind]}


def test_each_kind_and_each_layer_drops_where_it_says_and_nowhere_else(model):
    every = sites("attention") | sites("hidden") | {"embeddings.dropout"}
    assert dropping(model) == every  # --dropout 0.1: every kind, every layer
    # --attention-dropout 0 --hidden-dropout 0.1: the attention probabilities kept whole, hidden states not
    hidden = dropping(model, attention_dropout=0, hidden_dropout=0.1)
    assert hidden == sites("hidden") | {"embeddings.dropout"}
    assert dropping(model, hidden_dropout=0, embedding_dropout=0) == sites("attention")
    assert dropping(model, attention_dropout=0, hidden_dropout=0) == {"embeddings.dropout"}
    top = dropping(model, dropout_layers="top:1")  # the last layer, and the embeddings (their own kind)
    assert top == sites("attention", [3]) | sites("hidden", [3]) | {"embeddings.dropout"}
    bottom = dropping(model, dropout_layers="bottom:2", embedding_dropout=0)
    assert bottom == sites("attention", [0, 1]) | sites("hidden", [0, 1])
    assert dropping(model, dropout=0) == set()
    assert (model.config.hidden_dropout_prob, model.config.attention_probs_dropout_prob) == (0, 0)  # (config)


def test_view_dropout_with_a_clean_second_view(model):
    """--view-dropout 0.1 0: the first view dropped, the second the embedding without dropout -- the same as
    the model gives with p 0 in training and, to float rounding, in evaluation; then the first view's rates
    again. Equal rates: one pass, as --dropout."""
    one = batch()
    two_views = {k: torch.cat([v, v]) for k, v in one.items()}
    cfg = TrainConfig(view_dropout=[0.1, 0.0])
    model.set_dropout(**cfg.dropout_of(0))
    with torch.no_grad():
        torch.manual_seed(3)
        z = embed_views(model, two_views, 2, "cls_before_pooler", view_dropout=cfg.views_dropout())
        assert all(m.p == 0.1 for m in model.modules() if isinstance(m, torch.nn.Dropout))
        model.set_dropout(0.0)
        clean = embed_views(model, one, 1, "cls_before_pooler")[0]
        evaluated = embed_views(model.eval(), one, 1, "cls_before_pooler")[0]
        model.train().set_dropout(0.1)
        torch.manual_seed(3)
        first = embed_views(model, one, 1, "cls_before_pooler")[0]  # the first pass's masks, alone
    assert torch.equal(z[1], clean) and (z[1] - evaluated).abs().max() < 1e-5
    assert torch.equal(z[0], first) and (z[0] - clean).abs().max() > 1e-3
    assert TrainConfig(view_dropout=[0.2, 0.2]).views_dropout() is None  # one pass, at 0.2
    assert TrainConfig(view_dropout=[0.2, 0.2]).dropout_of(1)["p"] == 0.2


BAD = [  # (TrainConfig values, the one-line error)
    (dict(hidden_dropout=1.0), r"^--hidden-dropout 1.0: expected a probability in \[0, 1\)$"),
    (dict(attention_dropout=-0.1), r"^--attention-dropout -0.1: expected a probability"),
    (dict(embedding_dropout=float("nan")), r"^--embedding-dropout nan: expected a probability"),
    (dict(dropout_layers="middle:2"), r"^--dropout-layers middle:2: expected all, top:K or bottom:K"),
    (dict(dropout_layers="top:0"), r"^--dropout-layers top:0: expected"),
    (dict(view_dropout=[0.1, 1.5]), r"^--view-dropout 0.1 1.5: expected two probabilities in \[0, 1\)$"),
    (dict(view_dropout=[0.1, 0.0], fixed_mask=True), r"^--view-dropout gives each view its own rate"),
    (dict(view_dropout=[0.1, 0.0], dropout=0.2), r"^--view-dropout 0.1 0.0 is each view's --dropout"),
    (dict(dev_file="no/such.csv"), r"^--dev-file 'no/such.csv': no such file$"),
]


@pytest.mark.parametrize("values, error", BAD, ids=[b[1][1:30] for b in BAD])
def test_a_bad_knob_is_one_line_before_any_work(values, error):
    with pytest.raises((ValueError, OSError), match=error):
        check(TrainConfig(**values))


def test_more_layers_than_the_model_has_and_the_command_line(tiny_checkpoint, tmp_path):
    from formats.tokenizer import load_tokenizer
    model, tokenizer = BertModel.from_pretrained(tiny_checkpoint), load_tokenizer(tiny_checkpoint)
    with pytest.raises(ValueError, match=r"^--dropout-layers top:3: expected .* the model's 2 layers$"):
        check_data_and_model(TrainConfig(dropout_layers="top:3"), "x.txt", [("a", "a")] * 64, 1, tokenizer,
                             model)
    run = train_cli(["--model", tiny_checkpoint, "--view-dropout", "0.1", "2", "--output-dir",
                     str(tmp_path / "run")])
    assert run.returncode == 1 and run.stderr.strip() == ("error: --view-dropout 0.1 2.0: expected two "
                                                          "probabilities in [0, 1)")
    assert not (tmp_path / "run").exists()


KNOBS = ["--attention-dropout", "0.05", "--dropout-layers", "top:1", "--view-dropout", "0.15", "0"]


def test_the_knobs_survive_kill_9_and_resume_with_micro_batch_and_a_dev_file(tiny_checkpoint, data_root,
                                                                               finished_run, tmp_path):
    """Every knob at once, with --micro-batch (its replayed masks: the two passes of --view-dropout too) and
    STS-B dev given as a --dev-file: killed in a save and resumed, the run ends byte for byte as the uncut
    one; its run.json records them; and they changed the run (against the same run without them)."""
    dev = tmp_path / "dev.tsv"
    write_pairs(dev, data_root, "\t")
    common = ARGS + ["--model", tiny_checkpoint, "--data-dir", str(data_root), "--micro-batch", "4",
                     "--dev-file", str(dev)] + KNOBS
    kill_and_resume(common, tmp_path, 8)
    run = json.loads((tmp_path / "whole" / "run.json").read_text())
    knobs = ("attention_dropout", "dropout_layers", "view_dropout", "dev_file")
    assert {k: run["config"][k] for k in knobs} == {"attention_dropout": 0.05, "dropout_layers": "top:1",
                                                    "view_dropout": [0.15, 0.0], "dev_file": str(dev)}
    assert run["data"]["dev_file"]["path"] == str(dev.resolve()) and "stsb_dev" not in run["data"]
    plain, ours = log_without_seconds(finished_run[0]), log_without_seconds(tmp_path / "whole")
    assert ours[0]["dev"] == plain[0]["stsb_dev"]  # the same start, scored on the same pairs
    assert [r["loss"] for r in ours[1:]] != [r["loss"] for r in plain[1:]]  # the knobs did something


def test_the_signals_are_the_steps_own(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    """log.jsonl's top1, pos_cos, neg_cos and grad_norm of a run evaluated after every step: what a loop over
    that step's embeddings (anchors x positives) and its gradient before clipping gives."""
    seen, norms = [], []
    embed, clip = simcse.embed_views, torch.nn.utils.clip_grad_norm_

    def spied_embed(*args, **kwargs):
        z = embed(*args, **kwargs)
        seen.append(z.detach().double())  # (bf16 where the CPU has bf16 units)
        return z

    def spied_clip(params, max_norm):
        params = list(params)
        norms.append(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None) ** 0.5)
        return clip(params, max_norm)
    monkeypatch.setattr(simcse, "embed_views", spied_embed)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spied_clip)
    result = train.train(TrainConfig(model=tiny_checkpoint, output_dir=str(tmp_path / "run"), batch_size=8,
                                     max_steps=2, eval_steps=1, data_dir=str(data_root)), progress=False,
                         test=False)
    log = result["log"]
    assert [r["step"] for r in log] == [0, 1, 2] and log[0]["top1"] is None
    for record, z, norm in zip(log[1:], seen, norms):
        n = z.shape[1]
        cos = [[F.cosine_similarity(z[0, i], z[1, j], dim=0).item() for j in range(n)] for i in range(n)]
        top1 = sum(max(range(n), key=lambda j: cos[i][j]) == i for i in range(n)) / n
        assert record["top1"] == pytest.approx(top1)
        assert record["pos_cos"] == pytest.approx(sum(cos[i][i] for i in range(n)) / n, abs=1e-6)
        negatives = [cos[i][j] for i in range(n) for j in range(n) if i != j]
        assert record["neg_cos"] == pytest.approx(sum(negatives) / len(negatives), abs=1e-6)
        assert record["grad_norm"] == pytest.approx(norm, rel=1e-5) and norm > 0
