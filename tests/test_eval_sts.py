"""STS data parsing, and eval_sts numbers cross-checked against an independent transformers computation."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from scipy.stats import spearmanr

import data
from formats import senteval
from bert import BertModel
from formats.tokenizer import load_tokenizer
from eval_sts import evaluate, format_table

# --- Parsing, on small files written here ------------------------------------------------------


def write_year(root, inputs, golds, subsets=("FNWN", "headlines", "OnWN"), newline="\n", bom=False):
    folder = root / "senteval" / "STS" / "STS13-en-test"
    folder.mkdir(parents=True, exist_ok=True)
    for subset in subsets:
        for name, lines in ((f"STS.input.{subset}.txt", inputs), (f"STS.gs.{subset}.txt", golds)):
            text = ("\ufeff" if bom else "") + newline.join(lines) + newline
            (folder / name).write_bytes(text.encode("utf-8"))
    return folder


def test_unscored_pairs_are_skipped_with_their_sentences(tmp_path):
    write_year(tmp_path, ["a b\tc d", "unscored\tpair", "e  f \tg h"], ["4.0", "", "1.5"])
    pairs = data.load_sts("STS13", tmp_path)["headlines"]
    assert pairs.sent1 == ["a b", "e f"] and pairs.sent2 == ["c d", "g h"] and pairs.scores == [4.0, 1.5]


@pytest.mark.parametrize("newline,bom", [("\r\n", False), ("\n", True), ("\r\n", True)])
def test_crlf_and_bom(tmp_path, newline, bom):
    write_year(tmp_path, ["A man.\tA woman.", "x\ty"], ["5.000", "0.2"], newline=newline, bom=bom)
    pairs = data.load_sts("STS13", tmp_path)["OnWN"]
    assert pairs.sent1 == ["A man.", "x"] and pairs.sent2 == ["A woman.", "y"] and pairs.scores == [5.0, 0.2]


def test_missing_column_names_file_and_line(tmp_path):
    folder = write_year(tmp_path, ["a\tb", "only one sentence", "c\td"], ["1", "2", "3"])
    with pytest.raises(data.DataError, match=rf"{folder / 'STS.input.FNWN.txt'}:2: expected 2 tab-separated"):
        data.load_sts("STS13", tmp_path)


def test_bad_score_names_file_and_line(tmp_path):
    folder = write_year(tmp_path, ["a\tb", "c\td"], ["1", "high"])
    with pytest.raises(data.DataError, match=rf"{folder / 'STS.gs.FNWN.txt'}:2: expected a similarity score"):
        data.load_sts("STS13", tmp_path)


def test_missing_subset_file_is_named(tmp_path):
    folder = write_year(tmp_path, ["a\tb"], ["1"], subsets=("FNWN", "OnWN"))
    with pytest.raises(FileNotFoundError,
                       match=rf"{folder / 'STS.input.headlines.txt'}: not found.*data.py download"):
        data.load_sts("STS13", tmp_path)


def test_invalid_utf8_names_file_and_line(tmp_path):
    folder = write_year(tmp_path, ["a\tb", "c\td"], ["1", "2"])
    (folder / "STS.input.FNWN.txt").write_bytes(b"a\tb\nc\xff\td\n")
    with pytest.raises(data.DataError, match=r"STS.input.FNWN.txt:2: not valid UTF-8"):
        data.load_sts("STS13", tmp_path)


def test_stsb_and_sick_layouts(tmp_path):
    sts = tmp_path / "senteval" / "STS" / "STSBenchmark"
    sts.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (sts / f"sts-{split}.csv").write_text("main-captions\tMSRvid\t2012test\t0001\t3.5\tA  dog.\tA cat.\n")
    sick = tmp_path / "senteval" / "SICK"
    sick.mkdir()
    header = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n"
    for name in ("SICK_train.txt", "SICK_trial.txt", "SICK_test_annotated.txt"):
        (sick / name).write_bytes((header + "1\tA man.\tA boy.\t4.2\tNEUTRAL\r\n").encode())
    stsb = data.load_sts("STSBenchmark", tmp_path)["test"]
    assert (stsb.sent1, stsb.sent2, stsb.scores) == (["A dog."], ["A cat."], [3.5])
    sick_test = data.load_sts("SICKRelatedness", tmp_path)["test"]
    assert (sick_test.sent1, sick_test.sent2, sick_test.scores) == (["A man."], ["A boy."], [4.2])
    (sick / "SICK_trial.txt").write_text(header + "1\tA man.\n")
    with pytest.raises(data.DataError,
                       match=r"SICK_trial.txt:2: expected at least 4 tab-separated columns, found 2"):
        data.load_sts("SICKRelatedness", tmp_path)
    (sts / "sts-test.csv").write_text("broken\n")  # a broken test split stops neither training nor --mode dev
    assert data.load_sts("STSBenchmark", tmp_path, ["dev"])["dev"].scores == [3.5]
    with pytest.raises(data.DataError, match=r"sts-test.csv:1: expected at least 7"):
        data.load_sts("STSBenchmark", tmp_path)


def test_missing_data_dir_offline_says_how_to_get_data(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("offline and not in the cache")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(FileNotFoundError,
                       match=r"could not download senteval.tar \(LocalEntryNotFoundError\)\. "
                             r"Run `python data.py download` online.*<data-dir>/senteval/"):
        data.load_sts("STS12", tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.data_dir("elsewhere") == data.Path("elsewhere")


def test_real_pair_counts(data_root):
    counts = {task: {k: len(v.scores) for k, v in data.load_sts(task, data_root).items()}
              for task in senteval.STS_TASKS}
    assert [sum(counts[y].values()) for y in senteval.STS_YEARS] == [3108, 1500, 3750, 3000, 1186]
    assert counts["STSBenchmark"] == {"train": 5749, "dev": 1500, "test": 1379}
    assert counts["SICKRelatedness"] == {"train": 4500, "dev": 500, "test": 4927}


def test_table_and_average():
    table = format_table({"STS12": 70.004, "Avg": 71.5})
    assert "| STS12 |" in table and "70.00" in table and "Avg." in table


# --- Numbers: ours vs. an independent computation with transformers.BertModel + scipy ------------

def reference_scores(model_dir, pairs, poolers):
    """Spearman x100 per pooler, computed pair by pair with transformers, without any of our code."""
    model = transformers.BertModel.from_pretrained(model_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)

    def embed(sentences):
        batch = tokenizer(sentences, padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True)
        m = batch["attention_mask"].unsqueeze(-1).float()
        mean = lambda h: (h * m).sum(1) / m.sum(1)
        h = out.hidden_states
        return {"cls": out.pooler_output, "cls_before_pooler": h[-1][:, 0], "avg": mean(h[-1]),
                "avg_top2": mean((h[-1] + h[-2]) / 2), "avg_first_last": mean((h[1] + h[-1]) / 2)}

    sims = {p: [] for p in poolers}
    for i in range(0, len(pairs), 64):  # pairs come sorted by length: less padding, same numbers
        a = embed([" ".join(s.split()) for s, _ in pairs[i:i + 64]])
        b = embed([" ".join(s.split()) for _, s in pairs[i:i + 64]])
        for p in poolers:
            sims[p] += torch.nn.functional.cosine_similarity(a[p], b[p]).tolist()
    return sims


@pytest.mark.parametrize("poolers", [("avg_first_last",)])  # the pooler that reads the most hidden states
def test_scores_match_independent_computation(minilm_dir, data_root, poolers):
    stsb = data.load_sts("STSBenchmark", data_root)["test"]
    sts16 = data.load_sts("STS16", data_root)
    by_length = lambda pairs: sorted(pairs, key=lambda z: (len(z[0]), len(z[1])))
    sts16_pairs = by_length([(a, b, s) for p in sts16.values()
                             for a, b, s in zip(p.sent1, p.sent2, p.scores)])
    stsb_pairs = by_length(zip(stsb.sent1, stsb.sent2, stsb.scores))
    ref = reference_scores(minilm_dir, [(a, b) for a, b, _ in stsb_pairs + sts16_pairs], poolers)
    model, tokenizer = BertModel.from_pretrained(minilm_dir), load_tokenizer(minilm_dir)
    for pooler in poolers:
        ours = evaluate(model, tokenizer, pooler, tasks=["STSBenchmark", "STS16"],
                        data_dir=data_root)["scores"]
        expected_stsb = 100 * spearmanr(ref[pooler][:len(stsb_pairs)], [s for *_, s in stsb_pairs])[0]
        expected_sts16 = 100 * spearmanr(ref[pooler][len(stsb_pairs):], [s for *_, s in sts16_pairs])[0]
        assert abs(ours["STSBenchmark"] - expected_stsb) < 0.01, pooler
        assert abs(ours["STS16"] - expected_sts16) < 0.01, pooler
        assert 60 < ours["STSBenchmark"] < 95  # a trained sentence encoder, not noise


def test_all_poolers_agree_with_transformers_on_a_batch(minilm_dir):
    """The five poolers on one padded batch equal the definitions applied to transformers' outputs."""
    from tool import encode
    from simcse import POOLERS
    sentences = ["A man is playing a guitar.", "A woman slices an onion on a wooden board in the kitchen.",
                 "Hi."]
    model, tokenizer = BertModel.from_pretrained(minilm_dir), load_tokenizer(minilm_dir)
    hf = transformers.BertModel.from_pretrained(minilm_dir).eval()
    batch = transformers.AutoTokenizer.from_pretrained(minilm_dir)(sentences, padding=True,
                                                                   return_tensors="pt")
    with torch.no_grad():
        out = hf(**batch, output_hidden_states=True)
    m = batch["attention_mask"].unsqueeze(-1).float()
    h = out.hidden_states
    expected = {"cls": out.pooler_output, "cls_before_pooler": h[-1][:, 0],
                "avg": (h[-1] * m).sum(1) / m.sum(1),
                "avg_top2": ((h[-1] + h[-2]) / 2 * m).sum(1) / m.sum(1),
                "avg_first_last": ((h[1] + h[-1]) / 2 * m).sum(1) / m.sum(1)}
    for pooler in POOLERS:
        assert (encode(model, tokenizer, sentences, pooler) - expected[pooler]).abs().max() < 1e-5, pooler


def test_dev_mode_and_json_cli(minilm_dir, data_root, tmp_path):
    out = tmp_path / "scores.json"
    subprocess.run([sys.executable, "eval_sts.py", "--model", minilm_dir, "--pooler", "avg", "--mode", "dev",
                    "--tasks", "SICKRelatedness", "--json", str(out), "--data-dir", str(data_root)],
                   check=True, cwd=data.REPO, capture_output=True)
    result = json.loads(out.read_text())
    assert (set(result["scores"]) == {"SICKRelatedness"}
            and result["details"]["SICKRelatedness"]["dev"]["n"] == 500)


def test_cli_error_is_a_message_not_a_traceback(tmp_path, minilm_dir):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "eval_sts.py", "--model", minilm_dir, "--data-dir", str(tmp_path)],
                         cwd=data.REPO, capture_output=True, text=True, env=env)
    assert (run.returncode != 0 and "Traceback" not in run.stderr
            and "could not download senteval.tar" in run.stderr)


def test_test_mode_reports_seven_tasks_and_their_average(tmp_path, minilm_dir):
    """The whole test-mode pipeline on tiny files for all seven tasks, with a small random BERT."""
    from bert import BertConfig
    rng = np.random.default_rng(0)
    words = "a man woman dog cat plays runs eats the guitar ball food slowly fast red".split()
    sentence = lambda: " ".join(rng.choice(words, size=rng.integers(3, 9)))
    lines = lambda n: [f"{sentence()}\t{sentence()}" for _ in range(n)]
    scores = lambda n: [f"{x:.2f}" for x in rng.uniform(0, 5, n)]
    for year, subsets in senteval.STS_YEARS.items():
        folder = tmp_path / "senteval" / "STS" / f"{year}-en-test"
        folder.mkdir(parents=True)
        for subset in subsets:
            (folder / f"STS.input.{subset}.txt").write_text("\n".join(lines(20)) + "\n")
            (folder / f"STS.gs.{subset}.txt").write_text("\n".join(scores(20)) + "\n")
    stsb = tmp_path / "senteval" / "STS" / "STSBenchmark"
    stsb.mkdir()
    sick = tmp_path / "senteval" / "SICK"
    sick.mkdir()
    for split, sick_name in (("train", "SICK_train"), ("dev", "SICK_trial"), ("test", "SICK_test_annotated")):
        (stsb / f"sts-{split}.csv").write_text(
            "".join(f"g\tf\ty\t{i}\t{s}\t{l}\n" for i, (s, l) in enumerate(zip(scores(30), lines(30)))))
        (sick / f"{sick_name}.txt").write_text(
            "header\n" + "".join(f"{i}\t{l}\t{s}\tNEUTRAL\n"
                                 for i, (s, l) in enumerate(zip(scores(30), lines(30)))))
    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64))
    result = evaluate(model, load_tokenizer(minilm_dir), "avg", "test", data_dir=tmp_path)
    assert list(result["scores"]) == senteval.STS_TASKS + ["Avg"]
    assert (result["details"]["STS12"]["all"]["n"] == 100
            and result["details"]["STSBenchmark"]["test"]["n"] == 30)
    # As the authors' evaluation.py: the mean of the seven scores as printed (two decimals).
    assert result["scores"]["Avg"] == sum(round(result["scores"][t], 2) for t in senteval.STS_TASKS) / 7
    dev = evaluate(model, load_tokenizer(minilm_dir), "avg", "dev", data_dir=tmp_path)
    assert list(dev["scores"]) == ["STSBenchmark", "SICKRelatedness"]
    with pytest.raises(ValueError, match="no dev split"):
        evaluate(model, load_tokenizer(minilm_dir), "avg", "dev", tasks=["STS12"], data_dir=tmp_path)


def test_a_trained_checkpoint_is_scored_with_its_own_pooler(tiny_checkpoint, data_root, tmp_path):
    """eval_sts.py without --pooler: the embedding the checkpoint was trained for (train_config.json), as the
    training log reported it; cls for a plain BERT folder. It says which."""
    import subprocess
    import sys
    from infra.config import TrainConfig
    from train import train
    out = tmp_path / "run"
    # unsupervised: an MLP in training only, [CLS] before it to evaluate
    train(TrainConfig(model=tiny_checkpoint, output_dir=str(out), batch_size=8, max_steps=1,
                      data_dir=str(data_root)), progress=False, test=False)
    expected = {str(out / "best"): "cls_before_pooler", tiny_checkpoint: "cls"}
    for model, pooler in expected.items():
        run = subprocess.run([sys.executable, "eval_sts.py", "--model", model, "--tasks", "STSBenchmark",
                              "--json", str(tmp_path / "s.json"), "--data-dir", str(data_root)],
                             cwd=data.REPO, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        assert (f"pooler {pooler} (" in run.stdout
                and json.loads((tmp_path / "s.json").read_text())["pooler"] == pooler)
        best = BertModel.from_pretrained(model)
        assert json.loads((tmp_path / "s.json").read_text())["scores"]["STSBenchmark"] == pytest.approx(
            evaluate(best, load_tokenizer(model), pooler, tasks=["STSBenchmark"],
                     data_dir=data_root)["scores"]["STSBenchmark"], abs=1e-9)


def test_encode_tokenises_in_chunks_with_the_same_embeddings(minilm_dir, data_root):
    from tool import encode
    model, tokenizer = BertModel.from_pretrained(minilm_dir), load_tokenizer(minilm_dir)
    sentences = data.load_sts("STSBenchmark", data_root)["dev"].sent1[:40]
    calls = []

    def counting(batch, **kwargs):
        calls.append(len(batch))
        return tokenizer(batch, **kwargs)
    whole = encode(model, tokenizer, sentences, "avg", batch_size=8)
    chunked = encode(model, counting, sentences, "avg", batch_size=8, chunk=16)
    n = len(set(sentences))  # each distinct sentence once
    assert calls == [16, 16, n - 32]  # never more than a chunk of sentences tokenised (and padded) at once
    assert (whole - chunked).abs().max() <= 1e-5


# --- Your own pairs (--pairs, --dev-file), the bootstrap interval, SentEval's wmean --------------------

def run_main(monkeypatch, argv):
    import eval_sts
    monkeypatch.setattr(sys, "argv", ["eval_sts.py"] + argv)
    eval_sts.main()


def test_pairs_of_stsb_dev_score_as_dev_mode(tiny_checkpoint, data_root, tmp_path, monkeypatch, capsys):
    """STS-B dev written as a CSV and as a TSV of one's own: --pairs gives exactly --mode dev's STS-B number,
    and a bootstrap 95% interval around it."""
    from helpers.pairs import write_pairs
    for name, delimiter in (("dev.csv", ","), ("dev.tsv", "\t")):
        write_pairs(tmp_path / name, data_root, delimiter)
    common = ["--model", tiny_checkpoint, "--data-dir", str(data_root), "--json"]
    run_main(monkeypatch, common + [str(tmp_path / "stsb.json"), "--mode", "dev", "--tasks", "STSBenchmark"])
    run_main(monkeypatch, common + [str(tmp_path / "pairs.json"), "--pairs", str(tmp_path / "dev.csv"),
                                    str(tmp_path / "dev.tsv")])
    stsb = json.loads((tmp_path / "stsb.json").read_text())["details"]["STSBenchmark"]["dev"]
    pairs = json.loads((tmp_path / "pairs.json").read_text())["pairs"]
    for name in ("dev.csv", "dev.tsv"):
        ours = pairs[str(tmp_path / name)]
        assert (ours["spearman"], ours["pearson"], ours["n"]) == (stsb["spearman"], stsb["pearson"], 1500)
        low, high = ours["spearman_ci95"]
        assert low < ours["spearman"] < high and 1 < high - low < 15  # 1,500 pairs: a few points wide
    printed = capsys.readouterr().out
    assert f"Spearman {stsb['spearman']:.2f} [{low:.2f}, {high:.2f}]" in printed


def test_the_bootstrap_interval_is_spearmans_over_resampled_pairs():
    """A small case against a loop of scipy's spearmanr over the same draws; ties (in gold) as mean ranks."""
    from eval_sts import bootstrap
    rng = np.random.default_rng(5)
    predicted, gold = rng.normal(size=40), rng.integers(0, 6, 40).astype(float)
    draws = np.random.default_rng(0).integers(0, 40, (200, 40))
    loop = [100 * spearmanr(predicted[d], gold[d])[0] for d in draws]
    assert bootstrap(predicted, gold, resamples=200) == {
        "spearman": pytest.approx(list(np.percentile(loop, [2.5, 97.5]))),
        "pearson": pytest.approx(list(np.percentile([100 * np.corrcoef(predicted[d], gold[d])[0, 1]
                                                     for d in draws], [2.5, 97.5])))}


BAD_PAIRS = [  # (file text, the error after "<path>:")
    ("sentence1,sentence2\na,b\n", r"1: expected a header naming each of sentence1, sentence2, score once "
                                   r"\(not score\)"),
    ("sentence1,sentence2,score\na,b,1\nc,d\n", r"3: expected 3 columns, found 2"),
    ("sentence1,sentence2,score\na,b,1\nc,d,high\n", r"3: expected a similarity score, got 'high'"),
    ("sentence1,sentence2,score\na,b,1\nc,d,nan\n", r"3: expected a finite score, got 'nan'"),
    ("sentence1,sentence2,score\na,b,1\n , d,2\n", r"3: an empty sentence"),
    ('sentence1,sentence2,score\na,b,1\n"c,d,2\ne,f,3\n', r"3: .*quote"),
    ("sentence1,sentence2,score\na,b,1\n", r" 1 scored pair\(s\); a correlation needs at least 2"),
]


@pytest.mark.parametrize("text, error", BAD_PAIRS, ids=[e[:20] for _, e in BAD_PAIRS])
def test_a_bad_pairs_file_names_its_line(text, error, tmp_path):
    (tmp_path / "pairs.csv").write_text(text)
    with pytest.raises(senteval.DataError, match=rf"^{tmp_path / 'pairs.csv'}:?{error}"):
        senteval.read_pairs(tmp_path / "pairs.csv")
    with pytest.raises(senteval.DataError, match=r"expected a \.csv or \.tsv file"):
        senteval.read_pairs(tmp_path)


def test_wmean_is_senteval_weighted_mean_of_the_subsets(tmp_path, tiny_checkpoint):
    """STS13 with subsets of 3, 4 and 5 pairs: "all" correlates them concatenated, "wmean" weighs each
    subset's correlation by its pairs (SentEval's), and --aggregate picks the headline."""
    folder = tmp_path / "senteval" / "STS" / "STS13-en-test"
    folder.mkdir(parents=True)
    words = "a man plays the guitar woman cuts an onion dog runs in field".split()
    for k, subset in enumerate(("FNWN", "headlines", "OnWN")):
        n = 3 + k
        inputs = [f"{' '.join(words[i:i + 3])}\t{' '.join(words[i + 1:i + 5])}" for i in range(n)]
        golds = [str((i * 7 + k) % 5) for i in range(n)]
        for name, lines in ((f"STS.input.{subset}.txt", inputs), (f"STS.gs.{subset}.txt", golds)):
            (folder / name).write_text("\n".join(lines) + "\n")
    model, tokenizer = BertModel.from_pretrained(tiny_checkpoint), load_tokenizer(tiny_checkpoint)
    result = {a: evaluate(model, tokenizer, "avg", tasks=["STS13"], data_dir=tmp_path, aggregate=a)
              for a in ("all", "wmean")}
    details = result["all"]["details"]["STS13"]
    subsets = [details[s] for s in ("FNWN", "headlines", "OnWN")]
    assert details["wmean"]["spearman"] == pytest.approx(sum(d["spearman"] * d["n"] for d in subsets) / 12)
    assert result["wmean"]["scores"]["STS13"] == details["wmean"]["spearman"] != details["all"]["spearman"]
    assert result["all"]["scores"]["STS13"] == details["all"]["spearman"]
