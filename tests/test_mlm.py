"""--do-mlm: the masking is the authors' data collator's, the head starts where theirs does, and a training
step's loss and gradients equal their cl_forward with do_mlm on the same inputs and the same masked copy.
Runs with it resume bit for bit, run under torchrun, and leave best/ a plain encoder."""
import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers.models.bert.modeling_bert import BertLMPredictionHead
from transformers.models.roberta.modeling_roberta import RobertaLMHead

from bert import BertModel
from infra.config import TrainConfig, check, parse_args
from data import REPO
from extras.mlm import IGNORE, MaskedLM, load_head, mask_tokens
import simcse
from simcse import reset_mlp
from infra.speed import Speed
from formats.tokenizer import load_tokenizer
from train import MLM_MASKS, step_seed, train

SENTENCES = ["A man is playing a guitar.", "Two dogs run through a field of tall grass.", "Hello!",
             "Stocks fell sharply on Tuesday after the central bank raised interest rates.",
             "A woman slices an onion.", "The cat sleeps on the warm mat by the window."]


def authors_mask_tokens(inputs, tokenizer, mlm_probability=0.15):
    """The authors' OurDataCollatorWithPadding.mask_tokens (their train.py), on torch's global generator,
    with a transformers tokenizer."""
    inputs, labels = inputs.clone(), inputs.clone()
    probability_matrix = torch.full(labels.shape, mlm_probability)
    special_tokens_mask = [tokenizer.get_special_tokens_mask(val, already_has_special_tokens=True)
                           for val in labels.tolist()]
    special_tokens_mask = torch.tensor(special_tokens_mask, dtype=torch.bool)
    probability_matrix.masked_fill_(special_tokens_mask, value=0.0)
    masked_indices = torch.bernoulli(probability_matrix).bool()
    labels[~masked_indices] = -100
    indices_replaced = torch.bernoulli(torch.full(labels.shape, 0.8)).bool() & masked_indices
    inputs[indices_replaced] = tokenizer.convert_tokens_to_ids(tokenizer.mask_token)
    indices_random = torch.bernoulli(torch.full(labels.shape, 0.5)).bool() & masked_indices
    indices_random &= ~indices_replaced
    random_words = torch.randint(len(tokenizer), labels.shape, dtype=torch.long)
    inputs[indices_random] = random_words[indices_random]
    return inputs, labels


@pytest.fixture(scope="module", params=["bert", "roberta"])
def family(request, minilm_dir, tiny_checkpoint, tiny_roberta):
    """(checkpoint folder, transformers tokenizer) of each family."""
    if request.param == "bert":
        return tiny_checkpoint, transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    return tiny_roberta, transformers.RobertaTokenizerFast.from_pretrained(tiny_roberta)


def our_mask(tokenizer, ids, seed):
    return mask_tokens(ids, tokenizer.special_ids, tokenizer.mask_id, tokenizer.vocab_size,
                       torch.Generator().manual_seed(seed))


def test_masking_is_the_authors_data_collators(family, data_root):
    import data
    folder, reference = family
    ours = load_tokenizer(folder)
    dev = data.load_sts("STSBenchmark", data_root)["dev"]
    ids = ours(dev.sent1[:256] + dev.sent2[:256], max_length=32)["input_ids"]
    torch.manual_seed(3)
    expected = authors_mask_tokens(ids, reference)
    masked, labels = our_mask(ours, ids, 3)  # a generator seeded as their global one: the same draws
    assert torch.equal(masked, expected[0]) and torch.equal(labels, expected[1])

    chosen = labels != IGNORE
    special = torch.isin(ids, torch.tensor(ours.special_ids))
    assert not (chosen & special).any() and torch.equal(labels[chosen], ids[chosen])
    assert 0.13 < chosen.sum() / (~special).sum() < 0.17  # 15% of the real tokens
    as_mask = (masked == ours.mask_id) & chosen
    kept = (masked == ids) & chosen
    assert 0.75 < as_mask.sum() / chosen.sum() < 0.85 and 0.06 < kept.sum() / chosen.sum() < 0.14  # 80/10/10
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes


@pytest.mark.filterwarnings("ignore:.*no pooler weights")  # RobertaForMaskedLM has none
def test_the_head_starts_where_the_authors_does(tiny_checkpoint, tiny_roberta, minilm_dir, tmp_path):
    """BERT: BertForPreTraining's cls.predictions (the decoder the word embeddings), copied, untied. RoBERTa:
    the checkpoint's lm_head. MiniLM has no head: random transform, the word embeddings, zero bias."""
    torch.manual_seed(0)
    config = transformers.BertConfig.from_pretrained(tiny_checkpoint)
    pretraining = transformers.BertForPreTraining(config)
    torch.nn.init.normal_(pretraining.cls.predictions.bias)  # not zero, to see it copied
    pretraining.save_pretrained(tmp_path / "bert")
    pretraining = transformers.BertForPreTraining.from_pretrained(tmp_path / "bert")  # as their train.py
    model = BertModel.from_pretrained(str(tmp_path / "bert"))
    head = load_head(model, str(tmp_path / "bert"))
    theirs = pretraining.cls.predictions
    pairs = [(head.dense, theirs.transform.dense), (head.LayerNorm, theirs.transform.LayerNorm)]
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) for a, b in pairs)
    assert torch.equal(head.decoder.weight, pretraining.bert.embeddings.word_embeddings.weight)
    assert torch.equal(head.decoder.bias, theirs.bias)
    assert head.decoder.weight.data_ptr() != model.embeddings.word_embeddings.weight.data_ptr()  # not tied

    masked_lm = transformers.RobertaForMaskedLM(transformers.RobertaConfig.from_pretrained(tiny_roberta))
    masked_lm.save_pretrained(tmp_path / "roberta")
    head = load_head(BertModel.from_pretrained(str(tmp_path / "roberta")), str(tmp_path / "roberta"))
    theirs = masked_lm.lm_head
    pairs = [(head.dense, theirs.dense), (head.LayerNorm, theirs.layer_norm), (head.decoder, theirs.decoder)]
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) for a, b in pairs)
    assert torch.equal(head.decoder.weight, masked_lm.roberta.embeddings.word_embeddings.weight)

    model = BertModel.from_pretrained(minilm_dir)
    head = load_head(model, minilm_dir)
    assert torch.equal(head.decoder.weight, model.embeddings.word_embeddings.weight)
    assert (head.decoder.bias == 0).all() and (head.dense.bias == 0).all()
    assert abs(head.dense.weight.std().item() - 0.02) < 0.002  # N(0, 0.02): BERT's initialisation


def authors_cl_forward(encoder, mlp, lm_head, batch, mlm_input_ids, mlm_labels, temp, hard_negative_weight,
                       mlm_weight):
    """The authors' cl_forward with do_mlm (simcse/models.py), pooler `cls`; tensors (bs, num_sent, len)."""
    bs, num_sent = batch["input_ids"].shape[:2]
    flat = {k: v.view(-1, v.shape[-1]) for k, v in batch.items()}
    outputs = encoder(**flat)
    mlm_outputs = encoder(**{**flat, "input_ids": mlm_input_ids.view(-1, mlm_input_ids.shape[-1])})
    pooler_output = mlp(outputs.last_hidden_state[:, 0].view(bs, num_sent, -1))
    z1, z2 = pooler_output[:, 0], pooler_output[:, 1]
    cos_sim = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / temp
    if num_sent == 3:
        z3 = pooler_output[:, 2]
        z1_z3_cos = F.cosine_similarity(z1.unsqueeze(1), z3.unsqueeze(0), dim=-1) / temp
        cos_sim = torch.cat([cos_sim, z1_z3_cos], 1)
        n = z1_z3_cos.size(-1)
        weights = torch.tensor([[0.0] * (cos_sim.size(-1) - n) + [0.0] * i + [hard_negative_weight]
                                + [0.0] * (n - i - 1) for i in range(n)])
        cos_sim = cos_sim + weights
    loss = F.cross_entropy(cos_sim, torch.arange(bs))
    prediction_scores = lm_head(mlm_outputs.last_hidden_state)
    vocab_size = prediction_scores.shape[-1]
    masked_lm_loss = F.cross_entropy(prediction_scores.view(-1, vocab_size), mlm_labels.view(-1))
    return loss + mlm_weight * masked_lm_loss


class Tanh(torch.nn.Module):  # the authors' MLPLayer
    def __init__(self, dense):
        super().__init__()
        self.dense = dense

    def forward(self, x):
        return torch.tanh(self.dense(x))


@pytest.mark.parametrize("n_views", [2, 3])
def test_loss_and_gradients_equal_the_authors_cl_forward(family, n_views):
    """One training step as train.py takes it (dropout off, so that both are deterministic) against cl_forward
    on the same batch in the authors' layout, with the masked copy that the step drew. Unsupervised pairs and
    NLI triplets (hard-negative weight 1); BERT and RoBERTa."""
    folder, _ = family
    tokenizer = load_tokenizer(folder)
    cfg = TrainConfig(do_mlm=True, mlm_weight=0.1, hard_negative_weight=1.0, mlp_only_train=n_views == 2)
    model = BertModel.from_pretrained(folder)
    model.set_dropout(0.0)
    torch.manual_seed(cfg.seed)
    reset_mlp(model)
    fast = Speed(torch.device("cpu"), precision="fp32")  # as cl_forward: fp32
    mlm = MaskedLM(model, tokenizer, folder)
    params = [p for p in model.parameters() if p.requires_grad]
    examples = [(s, s, SENTENCES[-1 - i]) for i, s in enumerate(SENTENCES)]
    batch = tokenizer([e[k] for k in range(n_views) for e in examples])  # view by view, as train.py
    step = 7
    mlm_seed = step_seed(cfg.seed, 0, step, MLM_MASKS)  # the step's draw, as train.update's
    loss, _ = simcse.loss(fast.prepare(model).train(), batch, n_views, cfg, None, mlm, mlm_seed)  # train.py's
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    ours_loss = loss.item()

    encoder = transformers.AutoModel.from_pretrained(folder, hidden_dropout_prob=0.0,
                                                     attention_probs_dropout_prob=0.0)
    encoder.train()
    mlp = Tanh(copy.deepcopy(model.pooler.dense))
    roberta = model.config.model_type == "roberta"
    config = encoder.config
    lm_head = RobertaLMHead(config) if roberta else BertLMPredictionHead(config)
    names = {"dense": "dense" if roberta else "transform.dense",
             "LayerNorm": "layer_norm" if roberta else "transform.LayerNorm", "decoder": "decoder"}
    theirs = dict(lm_head.named_modules())
    with torch.no_grad():  # the same starting head (where it starts from is tested above)
        for ours_name, their_name in names.items():
            theirs[their_name].weight.copy_(getattr(mlm.head, ours_name).weight)
            theirs[their_name].bias.copy_(getattr(mlm.head, ours_name).bias)
    masked, labels = our_mask(tokenizer, batch["input_ids"], mlm_seed)
    their_layout = lambda t: t.view(n_views, len(examples), -1).transpose(0, 1).contiguous()  # (bs, views, L)
    their_batch = {k: their_layout(v) for k, v in batch.items() if not (roberta and k == "token_type_ids")}
    their_params = dict(encoder.named_parameters(), **{"pooler." + k: v for k, v in mlp.named_parameters()},
                        **{"lm_head." + o + p: dict(lm_head.named_parameters())[t + p]
                           for o, t in names.items() for p in (".weight", ".bias")})

    def authors(mlm_weight):  # their loss, and their gradients clipped as their Trainer clips them
        for p in their_params.values():
            p.grad = None
        loss = authors_cl_forward(encoder, mlp, lm_head, their_batch, their_layout(masked),
                                  their_layout(labels), cfg.temp, cfg.hard_negative_weight, mlm_weight)
        loss.backward()
        grads = {k: p.grad for k, p in their_params.items() if p.grad is not None}  # not their unused pooler
        torch.nn.utils.clip_grad_norm_(list(grads.values()), 1.0)
        return loss.item(), grads

    ours = {k: p.grad for k, p in model.named_parameters() if p.requires_grad}
    difference = lambda grads: max((ours[k] - g).abs().max().item() for k, g in grads.items())
    loss, grads = authors(cfg.mlm_weight)
    assert grads.keys() == ours.keys()  # every parameter we train, the head's included
    largest = max(g.abs().max().item() for g in grads.values())
    print(f"{model.config.model_type} {n_views} views: loss {ours_loss} vs {loss}; largest gradient "
          f"difference {difference(grads):.3g} (largest gradient {largest:.3g})")
    assert abs(ours_loss - loss) <= 1e-5 * loss  # float rounding: our cosines are a matrix product
    assert difference(grads) <= 1e-4 * largest
    assert difference(authors(0.0)[1]) > 100 * difference(grads)  # the MLM term is no small part of it


# --- Runs --------------------------------------------------------------------------------------------------

def test_flags_are_checked(tiny_checkpoint):
    assert parse_args(["--do-mlm"])[0].do_mlm and parse_args(["--do-mlm"])[0].mlm_weight == 0.1
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ValueError, match=rf"--mlm-weight {bad.replace('-', '-?')}.*at least 0"):
            check(parse_args(["--do-mlm", "--mlm-weight", bad])[0])
    with pytest.raises(ValueError, match="--mlm-weight 0.5 .*needs --do-mlm"):
        check(parse_args(["--mlm-weight", "0.5"])[0])
    check(parse_args(["--do-mlm", "--mlm-weight", "0"])[0])


def test_run_saves_the_head_in_the_resume_state_and_an_encoder_in_best(tiny_checkpoint, data_root, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(model=tiny_checkpoint, output_dir=str(out), batch_size=8, max_steps=2, eval_steps=2,
                      do_mlm=True, data_dir=str(data_root))
    result = train(cfg, progress=False, test=False)
    assert all(r["loss"] is None or r["loss"] > 0 for r in result["log"])
    last = torch.load(out / "last.pt", weights_only=True)["model"]
    head = {f"lm_head.{m}.{p}" for m in ("dense", "LayerNorm", "decoder") for p in ("weight", "bias")}
    assert {k for k in last if k.startswith("lm_head.")} == head
    start = load_head(BertModel.from_pretrained(tiny_checkpoint), tiny_checkpoint)
    assert not torch.equal(last["lm_head.decoder.bias"], start.decoder.bias)  # trained
    _, info = transformers.AutoModel.from_pretrained(out / "best", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert json.loads((out / "run.json").read_text())["config"]["do_mlm"] is True


def test_without_mlm_a_run_is_what_it_was(tiny_checkpoint, data_root, tmp_path):
    """--do-mlm off: nothing drawn, nothing attached, run.json as before (older runs resume)."""
    out = tmp_path / "run"
    train(TrainConfig(model=tiny_checkpoint, output_dir=str(out), batch_size=8, max_steps=1, eval_steps=1,
                      data_dir=str(data_root)), progress=False, test=False)
    last = torch.load(out / "last.pt", weights_only=True)["model"]
    assert not any(k.startswith("lm_head.") for k in last)
    assert "do_mlm" not in json.loads((out / "run.json").read_text())["config"]


def test_resume_with_mlm_on_roberta_is_bit_identical(tiny_roberta, data_root, tmp_path):
    from helpers.runs import ARGS, kill_and_resume
    kill_and_resume(ARGS + ["--model", tiny_roberta, "--data-dir", str(data_root), "--do-mlm"], tmp_path, 8)


def test_torchrun_with_mlm_on_roberta(tiny_roberta, data_root, tmp_path):
    """Two processes (gloo): the head, a part of the model used outside its forward, trains under
    DistributedDataParallel; the masked copy passes through the wrapped model a second time each step."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["train.py", "--model", tiny_roberta, "--max-steps", "2", "--eval-steps", "2", "--batch-size", "8",
            "--do-mlm", "--no-test", "--data-dir", str(data_root), "--output-dir", str(tmp_path / "run")]
    run = subprocess.run(torchrun + args, cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 2] and log[-1]["nonfinite"] == 0
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert any(k.startswith("lm_head.") for k in last)
