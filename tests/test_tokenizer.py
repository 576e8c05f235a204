"""Our tokenizer gives BertTokenizerFast's ids on every sentence of STS-B dev/test and SICK test."""
import json
import shutil

import pytest
import torch
import transformers

import data
from formats.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def sentences(data_root):
    stsb, sick = data.load_sts("STSBenchmark", data_root), data.load_sts("SICKRelatedness", data_root)
    pairs = [stsb["dev"], stsb["test"], sick["test"]]
    found = [s for p in pairs for s in p.sent1 + p.sent2]
    assert len(found) == 2 * (1500 + 1379 + 4927)
    return found


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt"])
def tokenizers(request, minilm_dir, tmp_path_factory):
    """(ours, reference), from the checkpoint's tokenizer.json, or from vocab.txt + tokenizer_config.json
    alone."""
    if request.param == "tokenizer.json":
        return load_tokenizer(minilm_dir), transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    folder = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(f"{minilm_dir}/vocab.txt", folder)
    shutil.copy(f"{minilm_dir}/tokenizer_config.json", folder)
    return load_tokenizer(str(folder)), transformers.BertTokenizerFast.from_pretrained(folder)


@pytest.mark.parametrize("max_length", [None, 12])
def test_ids_match_transformers_padded(tokenizers, sentences, max_length):
    ours, reference = tokenizers
    for start in range(0, len(sentences), 512):
        chunk = sentences[start:start + 512]
        a = ours(chunk, max_length=max_length)
        b = reference(chunk, padding=True, truncation=max_length is not None, max_length=max_length,
                      return_tensors="pt")
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(a[key], b[key]), (key, start)


@pytest.mark.parametrize("max_length", [None, 12])
def test_ids_match_transformers_unpadded(tokenizers, sentences, max_length):
    ours, reference = tokenizers
    for sentence in sentences[::7]:
        expected = reference(sentence, truncation=max_length is not None, max_length=max_length)["input_ids"]
        assert ours([sentence], max_length=max_length)["input_ids"][0].tolist() == expected, sentence


def test_vocab_only_folder_follows_do_lower_case(minilm_dir, tmp_path):
    shutil.copy(f"{minilm_dir}/vocab.txt", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = load_tokenizer(str(tmp_path))(["Hello World"])["input_ids"][0].tolist()
    reference = transformers.BertTokenizerFast.from_pretrained(tmp_path)
    assert cased == reference("Hello World")["input_ids"]
    assert cased != load_tokenizer(minilm_dir)(["Hello World"])["input_ids"][0].tolist()


def test_save_pretrained_copies_tokenizer_files(minilm_dir, tmp_path):
    tokenizer = load_tokenizer(minilm_dir)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "vocab.txt").exists()
    again = load_tokenizer(str(tmp_path))
    assert torch.equal(again(["A man is playing a guitar."])["input_ids"],
                       tokenizer(["A man is playing a guitar."])["input_ids"])


def test_folder_without_tokenizer_files_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json or vocab.txt"):
        load_tokenizer(str(tmp_path))
