"""RoBERTa: bert.py is the same function as transformers.RobertaModel on random checkpoints (a tiny one and
the roberta-base shape), saves what transformers loads, and our byte-level BPE gives RobertaTokenizerFast's
ids. Everything downstream (training, poolers, the sentence-transformers export, the tool) works with it."""
import json
import logging
import shutil

import pytest
import torch
import transformers

import data
from bert import BertConfig, BertModel
from infra.config import TrainConfig
from simcse import POOLERS, pool
from formats.tokenizer import load_tokenizer
from tool import SimCSE
from train import train

SENTENCES = ["A man is playing a guitar.", "Two dogs run through a field of tall grass.", "Hello!",
             "The café's crème brûlée was, frankly, the best I've had in years — "
             "worth the 40-minute wait.",
             "  Leading spaces, and a <mask> written out.", "A woman slices an onion."]


def outputs(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch, output_hidden_states=True)


def largest_differences(ours, theirs, batch):
    """(hidden states at real tokens, pooler output): the largest absolute differences."""
    a, b = outputs(ours, batch), outputs(theirs, {k: v for k, v in batch.items() if k != "token_type_ids"})
    real = batch["attention_mask"].bool()
    assert len(a.hidden_states) == len(b.hidden_states) == ours.config.num_hidden_layers + 1
    hidden = max((x - y)[real].abs().max().item() for x, y in zip(a.hidden_states, b.hidden_states))
    return hidden, (a.pooler_output - b.pooler_output).abs().max().item()


@pytest.fixture(scope="module")
def batch(tiny_roberta):
    b = load_tokenizer(tiny_roberta)(SENTENCES)
    assert (b["attention_mask"] == 0).any() and (b["input_ids"][:, 0] == 0).all()  # padding; <s> first
    return b


def both(folder):
    return BertModel.from_pretrained(folder), transformers.RobertaModel.from_pretrained(folder)


def test_parity_with_transformers(tiny_roberta, batch):
    ours, theirs = both(tiny_roberta)
    assert ours.config.model_type == "roberta" and ours.config.pad_token_id == 1
    assert largest_differences(ours, theirs, batch) == (0.0, 0.0)  # bit-identical


def test_parity_at_the_roberta_base_shape(tmp_path, tiny_roberta):
    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                                        layer_norm_eps=1e-5)  # roberta-base's config.json
    transformers.RobertaModel(config).save_pretrained(tmp_path)
    theirs = transformers.RobertaModel.from_pretrained(tmp_path)
    ours = BertModel.from_pretrained(str(tmp_path))
    batch = load_tokenizer(tiny_roberta)(SENTENCES[:2])
    hidden, pooler = largest_differences(ours, theirs, batch)
    assert hidden <= 1e-5 and pooler <= 1e-5


def test_position_ids_are_robertas():
    """Real tokens from padding_idx + 1 on, padding at padding_idx (BERT's 0, 1, 2, ... would be wrong)."""
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings
    model = BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=8, max_position_embeddings=10, model_type="roberta",
                                 pad_token_id=1)).eval()
    ids = torch.tensor([[0, 5, 6, 2, 1, 1], [0, 7, 2, 1, 1, 1]])
    seen = []
    model.embeddings.position_embeddings.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    model(ids, ids.ne(1).long())
    assert seen[0].tolist() == [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]]
    assert torch.equal(seen[0], RobertaEmbeddings.create_position_ids_from_input_ids(ids, 1))


def test_save_pretrained_loads_in_transformers(tiny_roberta, tmp_path, batch):
    ours = BertModel.from_pretrained(tiny_roberta)
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "roberta" and config["architectures"] == ["RobertaModel"]
    theirs, info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(theirs, transformers.RobertaModel)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert largest_differences(ours, theirs, batch) == (0.0, 0.0)
    again = BertModel.from_pretrained(str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), ours.state_dict().values()))


def test_loads_the_masked_lm_layout(tiny_roberta, tmp_path, batch):
    """RobertaForMaskedLM's keys ("roberta." prefix, lm_head.*, no pooler), as roberta-base's own file."""
    torch.manual_seed(1)
    config = transformers.RobertaConfig.from_pretrained(tiny_roberta)
    transformers.RobertaForMaskedLM(config).save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no pooler weights") as caught:
        ours = BertModel.from_pretrained(str(tmp_path))
    assert not [w for w in caught if "unexpected" in str(w.message)]  # lm_head.* is a pre-training head
    theirs = transformers.RobertaModel.from_pretrained(tmp_path)
    assert largest_differences(ours, theirs, batch)[0] == 0.0


def test_other_model_types_are_an_error(tiny_roberta, tmp_path):
    shutil.copy(f"{tiny_roberta}/model.safetensors", tmp_path)
    config = json.loads(open(f"{tiny_roberta}/config.json").read())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "distilbert"}))
    with pytest.raises(ValueError, match="model_type 'distilbert' is not one of bert, roberta"):
        BertModel.from_pretrained(str(tmp_path))


# --- The tokenizer ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sentences(data_root):
    stsb = data.load_sts("STSBenchmark", data_root)
    found = [s for p in (stsb["dev"], stsb["test"]) for s in p.sent1 + p.sent2]
    assert len(found) == 2 * (1500 + 1379)
    return found


@pytest.fixture(scope="module", params=["vocab.json + merges.txt", "tokenizer.json"])
def tokenizers(request, roberta_tokenizer_dir, tmp_path_factory):
    """(ours, reference): from the two files of the original roberta-base layout, or from the tokenizer.json
    that transformers writes."""
    reference = transformers.RobertaTokenizerFast.from_pretrained(roberta_tokenizer_dir)
    if request.param == "vocab.json + merges.txt":
        return load_tokenizer(roberta_tokenizer_dir), reference
    folder = tmp_path_factory.mktemp("tokenizer_json")
    reference.save_pretrained(folder)
    assert (folder / "tokenizer.json").exists()
    for name in ("vocab.json", "merges.txt"):  # ours must read tokenizer.json alone
        (folder / name).unlink(missing_ok=True)
    return load_tokenizer(str(folder)), transformers.RobertaTokenizerFast.from_pretrained(folder)


@pytest.mark.parametrize("max_length", [None, 12])
def test_ids_and_masks_match_transformers(tokenizers, sentences, max_length):
    ours, reference = tokenizers
    for start in range(0, len(sentences), 512):
        chunk = sentences[start:start + 512]
        a = ours(chunk, max_length=max_length)
        b = reference(chunk, padding=True, truncation=max_length is not None, max_length=max_length,
                      return_tensors="pt")
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["attention_mask"], b["attention_mask"])
    assert ours.pad_id == reference.pad_token_id == 1 and ours.mask_id == reference.mask_token_id
    assert ours.special_ids == sorted(reference.all_special_ids) and ours.vocab_size == len(reference)


def test_tokenizer_save_pretrained_round_trip(roberta_tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(roberta_tokenizer_dir)
    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert torch.equal(again(SENTENCES)["input_ids"], tokenizer(SENTENCES)["input_ids"])


# --- Everything downstream ---------------------------------------------------------------------------

@pytest.mark.parametrize("pooler", POOLERS)
def test_every_pooler_is_transformers_roberta_pooled(pooler, tiny_roberta, batch):
    ours, theirs = both(tiny_roberta)
    a = pool(outputs(ours, batch), batch["attention_mask"], pooler)
    without_types = {k: v for k, v in batch.items() if k != "token_type_ids"}  # as RoBERTa's tokenizer
    b = pool(outputs(theirs, without_types), batch["attention_mask"], pooler)
    assert torch.equal(a, b)


def test_trained_roberta_checkpoint_everywhere(tiny_roberta, data_root, tmp_path, caplog):
    """A supervised run on RoBERTa: best/ loads in transformers (no missing or unexpected keys), in
    sentence-transformers with its pooler (cls: the MLP as a Dense module), and in the SimCSE tool."""
    from sentence_transformers import SentenceTransformer
    (tmp_path / "nli.csv").write_text("sent0,sent1,hard_neg\n" + "".join(
        f"A man plays {i} guitars.,A person plays music.,A cat sleeps.\n" for i in range(20)))
    out = tmp_path / "run"
    result = train(TrainConfig(model=tiny_roberta, train_file=str(tmp_path / "nli.csv"), output_dir=str(out),
                               batch_size=8, max_steps=2, eval_steps=2, mlp_only_train=False,
                               data_dir=str(data_root)), progress=False, test=False)
    assert [r["step"] for r in result["log"]] == [0, 2]
    best = out / "best"
    theirs, info = transformers.AutoModel.from_pretrained(best, output_loading_info=True)
    assert isinstance(theirs, transformers.RobertaModel)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tool = SimCSE(str(best))
    assert tool.pooler == "cls"
    with caplog.at_level(logging.WARNING):
        st = SentenceTransformer(str(best), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Dense"]
    ours = tool.encode(SENTENCES, normalize_to_unit=False)
    assert (st.encode(SENTENCES, convert_to_tensor=True) - ours).abs().max() <= 1e-5
    with torch.no_grad():  # the cls embedding is transformers' pooler output of the saved checkpoint
        b = load_tokenizer(str(best))(SENTENCES)
        mlp = theirs(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).pooler_output
        assert (mlp - ours).abs().max() <= 1e-5


def test_roberta_presets_are_the_authors_runs():
    from infra.config import parse_args
    unsup, sup = parse_args(["--preset", "unsup-roberta"])[0], parse_args(["--preset", "sup-roberta"])[0]
    values = lambda c: (c.model, c.batch_size, c.lr, c.epochs, c.max_length, c.eval_steps, c.mlp_only_train)
    assert values(unsup) == ("roberta-base", 512, 1e-5, 1, 32, 125, True)
    assert values(sup) == ("roberta-base", 512, 5e-5, 3, 32, 125, False)
    assert unsup.train_file.startswith("wiki/") and sup.train_file.startswith("nli/")
