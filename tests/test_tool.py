"""Using a trained model: checkpoints that sentence-transformers reads with the right pooler, and the
SimCSE tool (encode, similarity, search) against brute force."""
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import data
from infra import config
import train
from bert import BertConfig, BertModel
from formats.tokenizer import load_tokenizer
from tool import encode
from simcse import POOLERS
from formats.st_files import save_sentence_transformers
from tool import SimCSE

SENTENCES = ["A man is playing a guitar.", "Two dogs run through a field of tall grass.", "The market fell.",
             "A woman slices an onion in a small kitchen while the radio plays."]


@pytest.mark.parametrize("preset, pooler", [("quick", "cls_before_pooler"), ("quick-sup", "cls")])
def test_trained_checkpoint_loads_in_sentence_transformers_with_its_pooler(preset, pooler, tiny_checkpoint,
                                                                           data_root, tmp_path, caplog):
    from sentence_transformers import SentenceTransformer
    cfg, _ = config.parse_args(["--preset", preset, "--model", tiny_checkpoint, "--max-steps", "1",
                                "--batch-size", "8", "--output-dir", str(tmp_path), "--data-dir",
                                str(data_root)])
    train.train(cfg, progress=False, test=False)
    best = tmp_path / "best"

    with caplog.at_level(logging.WARNING):
        st = SentenceTransformer(str(best), device="cpu")
    assert not [r for r in caplog.records if "sentence_transformers" in r.name], caplog.text
    modules = list(st)
    assert [type(m).__name__ for m in modules] == (["Transformer", "Pooling"]
                                                   + (["Dense"] if pooler == "cls" else []))
    # and the MLP (Dense) only where it is the embedding
    assert modules[1].get_config_dict()["pooling_mode"] == "cls"

    ours = SimCSE(str(best))
    assert ours.pooler == pooler  # from the checkpoint's train_config.json
    theirs = st.encode(SENTENCES, convert_to_tensor=True)
    assert (theirs - ours.encode(SENTENCES, normalize_to_unit=False)).abs().max() <= 1e-5
    assert not torch.allclose(theirs,
                              SimCSE(str(best), pooler="avg").encode(SENTENCES, normalize_to_unit=False),
                              atol=1e-3)  # not mean pooling, which it would build without our files

    _, info = transformers.AutoModel.from_pretrained(best, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


@pytest.mark.parametrize("pooler", POOLERS)
def test_every_pooler_is_written_right_or_not_at_all(pooler, minilm_dir, tmp_path):
    model, tokenizer = BertModel.from_pretrained(minilm_dir), load_tokenizer(minilm_dir)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    save_sentence_transformers(model, tmp_path, pooler)
    # no sentence-transformers equivalent: say so, write nothing wrong
    if pooler in ("avg_top2", "avg_first_last"):
        assert not (tmp_path / "modules.json").exists()
        assert f"has no `{pooler}` pooling" in (tmp_path / "README.md").read_text()
        return
    from sentence_transformers import SentenceTransformer
    theirs = SentenceTransformer(str(tmp_path), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    assert (theirs - encode(model, tokenizer, SENTENCES, pooler)).abs().max() <= 1e-5


@pytest.fixture(scope="module")
def dev_tool(minilm_dir, data_root):
    dev = data.load_sts("STSBenchmark")["dev"]
    sentences = list(dict.fromkeys(dev.sent1 + dev.sent2))[:600]
    return SimCSE(minilm_dir, pooler="avg"), sentences


def test_search_equals_brute_force(dev_tool):
    tool, sentences = dev_tool
    tool.build_index(sentences[:250])
    tool.add_to_index(sentences[250:])
    queries = sentences[:20] + sentences[-5:]
    z = tool.encode(sentences, return_numpy=True)
    q = z[[sentences.index(s) for s in queries]]
    brute = q @ z.T  # cosine of unit vectors

    for top_k, threshold in ((1, 0.0), (5, 0.0), (5, 0.6), (50, 0.9)):
        results = tool.search(queries, threshold=threshold, top_k=top_k)
        for query, hits, row in zip(queries, results, brute):
            assert hits[0][0] == query and hits[0][1] == pytest.approx(1.0, abs=1e-5)  # itself, first
            order = np.argsort(-row, kind="stable")[:top_k]
            expected = [(sentences[i], row[i]) for i in order if row[i] >= threshold]
            assert [h[0] for h in hits] == [e[0] for e in expected]
            assert np.allclose([h[1] for h in hits], [e[1] for e in expected], atol=1e-5)
            assert len(hits) <= top_k and all(score >= threshold for _, score in hits)
    one = tool.search(queries[0], top_k=3)  # one query: one list of (sentence, score)
    assert (isinstance(one, list) and isinstance(one[0], tuple)
            and one == tool.search([queries[0]], top_k=3)[0])


def test_search_in_chunks_equals_one_chunk(dev_tool):
    tool, sentences = dev_tool
    tool.build_index(sentences)
    q = tool.encode(sentences[:7])
    whole_s, whole_i = tool.nearest(q, 10)
    chunked_s, chunked_i = tool.nearest(q, 10, chunk=64)
    assert torch.equal(whole_i, chunked_i) and torch.allclose(whole_s, chunked_s)


def test_similarity_shapes(dev_tool):
    tool, sentences = dev_tool
    assert isinstance(tool.similarity(sentences[0], sentences[0]), float)
    assert tool.similarity(sentences[0], sentences[0]) == pytest.approx(1.0, abs=1e-5)
    assert tool.similarity(sentences[0], sentences[:3]).shape == (3,)
    assert tool.similarity(sentences[:2], sentences[:3]).shape == (2, 3)
    keys = tool.encode(sentences[:3], return_numpy=True)
    assert np.allclose(tool.similarity(sentences[:2], keys), tool.similarity(sentences[:2], sentences[:3]),
                       atol=1e-6)
    assert (tool.encode(sentences[0]).shape == (384,)
            and tool.encode(sentences[0], keepdim=True).shape == (1, 384))


def test_bad_input_is_a_clear_error(dev_tool, tmp_path, minilm_dir):
    tool, _ = dev_tool
    with pytest.raises(ValueError, match="no sentences to encode"):
        tool.encode([])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty.txt: no sentences"):
        tool.build_index(str(tmp_path / "empty.txt"))
    with pytest.raises(FileNotFoundError, match="nope.txt: no such file"):
        tool.build_index(str(tmp_path / "nope.txt"))
    tool.build_index(["A sentence."])
    for wrong in (None, 3):  # a one-line error naming the item, and the index as it was
        kind = type(wrong).__name__
        with pytest.raises(TypeError, match=rf"sentence 1 is {wrong!r} \({kind}\), not a string"):
            tool.build_index(["Another sentence.", wrong])
    assert tool.index["sentences"] == ["A sentence."]
    for k in (0, -1):
        with pytest.raises(ValueError, match="top_k must be at least 1"):
            tool.search("A query.", top_k=k)
    BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "no_tokenizer")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt"):
        SimCSE(str(tmp_path / "no_tokenizer"))
    fresh = SimCSE.__new__(SimCSE)
    fresh.index = None
    with pytest.raises(ValueError, match="build_index"):
        fresh.search("A query.")


def test_command_line_encode_and_search(tiny_checkpoint, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n\n")
    run = subprocess.run([sys.executable, "tool.py", "encode", "--model", tiny_checkpoint, "--input",
                          str(corpus), "--output", str(tmp_path / "z")],  # no .npy: written as given
                         cwd=data.REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"-> {tmp_path / 'z'} " in run.stdout and not (tmp_path / "z.npy").exists()
    z = np.load(tmp_path / "z")
    assert np.allclose(z, SimCSE(tiny_checkpoint).encode(SENTENCES, return_numpy=True), atol=1e-6)
    run = subprocess.run([sys.executable, "tool.py", "search", "--model", tiny_checkpoint, "--corpus",
                          str(corpus), "--query", SENTENCES[2], "--top-k", "2", "--threshold", "-1"],
                         cwd=data.REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0] == SENTENCES[2] and lines[1].endswith(SENTENCES[2]) and len(lines) == 3
    run = subprocess.run([sys.executable, "tool.py", "search", "--model", tiny_checkpoint, "--corpus",
                          str(tmp_path / "missing.txt"), "--query", "x"],
                         cwd=data.REPO, capture_output=True, text=True)
    assert run.returncode == 1 and "missing.txt': no such file" in run.stderr and "Traceback" not in run.stderr
