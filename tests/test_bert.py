"""bert.py is the same function as transformers.BertModel, loads the checkpoint layouts found in the wild,
and fails clearly on bad input."""
import json
import shutil

import pytest
import torch
import transformers

from bert import BertConfig, BertModel
from formats.checkpoint import read_config
from formats.tokenizer import load_tokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "Two dogs run through a field of tall grass.",
    "Stocks fell sharply on Tuesday after the central bank raised interest rates by half a point.",
    "Hello!",
    "The café's crème brûlée was, frankly, the best I've had in years — worth the 40-minute wait.",
    "A woman slices an onion.",
]

TINY = dict(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128)


@pytest.fixture(scope="module")
def batch(minilm_dir):
    b = load_tokenizer(minilm_dir)(SENTENCES)
    assert (b["attention_mask"] == 0).any(), "the batch should contain padding"
    return b


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.manual_seed(0)
    reference = transformers.BertModel(transformers.BertConfig(**TINY))
    path = tmp_path_factory.mktemp("tiny")
    reference.save_pretrained(path)
    return str(path)


def outputs(model, batch, train=False):
    model.train(train)
    with torch.no_grad():
        return model(**batch, output_hidden_states=True)


def assert_same_outputs(ours, theirs, batch, atol=1e-5):
    """Equal at every real token (padded positions carry no meaning)."""
    a, b = outputs(ours, batch), outputs(theirs, batch)
    real = batch["attention_mask"].bool()
    assert (a.last_hidden_state - b.last_hidden_state)[real].abs().max() <= atol
    assert (a.pooler_output - b.pooler_output).abs().max() <= atol
    assert len(a.hidden_states) == len(b.hidden_states) == ours.config.num_hidden_layers + 1
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert (x - y)[real].abs().max() <= atol


@pytest.mark.parametrize("checkpoint", ["tiny", "minilm"])
def test_parity_with_transformers(checkpoint, tiny_dir, minilm_dir, batch):
    path = tiny_dir if checkpoint == "tiny" else minilm_dir
    assert_same_outputs(BertModel.from_pretrained(path), transformers.BertModel.from_pretrained(path), batch)


def test_training_on_a_cpu_runs_the_real_tokens_only_and_changes_none(minilm_dir, batch):
    """In training on a CPU, BertModel.forward packs the real tokens (bert.Tokens), padding up to a multiple
    of 64: each sentence's outputs are as computed alone, unpadded, and nothing leaks from the padding."""
    model = BertModel.from_pretrained(minilm_dir)
    model.set_dropout(0.0)
    packed = outputs(model, batch, train=True)
    real = batch["attention_mask"].bool()
    computed = sum((h != 0).any(-1) for h in packed.hidden_states).bool()  # the positions that were rows
    assert (computed | ~real).all() and int(computed.sum()) % 64 == 0  # every real one, padding up to 64k
    assert computed.sum() < real.sum() + 64 and all(h.isfinite().all() for h in packed.hidden_states)
    for i in range(len(SENTENCES)):  # each sentence alone, unpadded, in eval mode: every position a row
        n = int(real[i].sum())
        alone = outputs(model, {k: v[i:i + 1, :n] for k, v in batch.items()})
        assert (alone.last_hidden_state[0] - packed.last_hidden_state[i, :n]).abs().max() < 1e-5


def test_the_training_branches_change_no_gradient(minilm_dir, batch):
    """Training on a CPU (packed tokens, attention written out) or evaluation's path (every position, the
    fused attention kernel, as transformers computes it): one loss and gradient of every weight at p 0."""
    from simcse import contrastive_loss, embed_views
    results = []
    for training in (True, False):
        model = BertModel.from_pretrained(minilm_dir)
        model.set_dropout(0.0)
        two_views = {k: torch.cat([v, v]) for k, v in batch.items()}
        loss = contrastive_loss(embed_views(model.train(training), two_views, 2, "avg"))
        loss.backward()
        results.append((loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (packed, g), (full, h) = results
    assert (packed - full).abs() < 1e-5 and g.keys() == h.keys() and len(g) > 90
    assert all((g[n] - h[n]).abs().max() <= 1e-5 * (1 + h[n].abs().max()) for n in g)


def test_from_pretrained_returns_eval_mode(minilm_dir):
    assert not BertModel.from_pretrained(minilm_dir).training


def test_dropout_is_the_only_randomness(tiny_dir, batch):
    model = BertModel.from_pretrained(tiny_dir)
    torch.manual_seed(1)
    first, second = outputs(model, batch, train=True), outputs(model, batch, train=True)
    assert (first.last_hidden_state - second.last_hidden_state).abs().max() > 1e-3  # p = 0.1: two masks

    model.set_dropout(0.0)  # changed after loading: takes effect in every dropout site
    a, b = outputs(model, batch, train=True), outputs(model, batch, train=True)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)  # nothing else draws random numbers
    real = batch["attention_mask"].bool()  # training on a CPU computes the real tokens only
    assert (a.last_hidden_state - outputs(model, batch).last_hidden_state)[real].abs().max() < 1e-5  # = eval

    model.set_dropout(0.5)
    a, b = outputs(model, batch, train=True), outputs(model, batch, train=True)
    assert (a.last_hidden_state - b.last_hidden_state).abs().max() > 1e-3


def test_attention_dropout_alone_changes_outputs(tiny_dir, batch):
    model = BertModel.from_pretrained(tiny_dir)
    model.set_dropout(0.0)
    for layer in model.encoder.layer:
        layer.attention.self.dropout.p = 0.3  # on the attention probabilities only
    a, b = outputs(model, batch, train=True), outputs(model, batch, train=True)
    assert (a.last_hidden_state - b.last_hidden_state).abs().max() > 1e-3


def test_save_pretrained_loads_in_transformers(tiny_dir, tmp_path, batch):
    ours = BertModel.from_pretrained(tiny_dir)
    ours.save_pretrained(tmp_path)
    theirs, info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(theirs, transformers.BertModel)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert_same_outputs(ours, theirs, batch, atol=0)
    assert_same_outputs(BertModel.from_pretrained(str(tmp_path)), ours, batch, atol=0)


def test_loads_pretraining_layout_with_gamma_beta(minilm_dir, tmp_path, batch):
    ours = BertModel.from_pretrained(minilm_dir)
    old = {}
    for key, value in ours.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old["bert." + key] = value.clone()
    old["cls.predictions.bias"] = torch.zeros(30522)  # a pre-training head, ignored
    torch.save(old, tmp_path / "pytorch_model.bin")
    shutil.copy(f"{minilm_dir}/config.json", tmp_path)
    assert_same_outputs(BertModel.from_pretrained(str(tmp_path)), ours, batch, atol=0)


def test_unexpected_keys_are_reported(tiny_dir, tmp_path):
    state = BertModel.from_pretrained(tiny_dir).state_dict()
    state["encoder.layer.9.output.dense.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "pytorch_model.bin")
    shutil.copy(f"{tiny_dir}/config.json", tmp_path)
    with pytest.warns(UserWarning, match="encoder.layer.9.output.dense.weight"):
        BertModel.from_pretrained(str(tmp_path))


def test_missing_encoder_key_is_an_error(tiny_dir, tmp_path):
    state = BertModel.from_pretrained(tiny_dir).state_dict()
    del state["encoder.layer.1.attention.self.key.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    shutil.copy(f"{tiny_dir}/config.json", tmp_path)
    with pytest.raises(KeyError, match="encoder.layer.1.attention.self.key.weight"):
        BertModel.from_pretrained(str(tmp_path))


def test_missing_weight_file_is_an_error(tiny_dir, tmp_path):
    shutil.copy(f"{tiny_dir}/config.json", tmp_path)
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        BertModel.from_pretrained(str(tmp_path))


def test_corrupt_config_is_an_error(tiny_dir, tmp_path):
    shutil.copy(f"{tiny_dir}/model.safetensors", tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 64,')
    with pytest.raises(ValueError, match="config.json"):
        BertModel.from_pretrained(str(tmp_path))


def test_missing_config_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertModel.from_pretrained(str(tmp_path))


def test_truncated_weight_file_is_an_error(tiny_dir, tmp_path):
    shutil.copy(f"{tiny_dir}/config.json", tmp_path)
    blob = open(f"{tiny_dir}/model.safetensors", "rb").read()
    (tmp_path / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        BertModel.from_pretrained(str(tmp_path))


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="no-such-org/no-such-model.*local folder"):
        BertModel.from_pretrained("no-such-org/no-such-model")


def test_config_reads_only_bert_fields(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4,
                                                      "use_cache": True}))
    config = read_config(BertConfig, tmp_path / "config.json")
    assert config.hidden_size == 64 and config.num_hidden_layers == 12
