"""demo.py through its HTTP API, one server for the module (`python demo.py` on a tiny BERT): the numbers of
each view equal simcse.py's and SimCSE's, a seed gives two browsers their own reproducible masks, every bad
input gets a one-line message and the server answers the next request, no file outside the run folders can
be fetched, and run folders are read, never written."""
import json
import math
import sys
import threading
from argparse import Namespace

import numpy as np
import pytest
import torch

import demo
import simcse
from bert import BertModel
from data import REPO
from helpers.demo_site import RECORDS, make_site
from formats.tokenizer import load_tokenizer
from tool import SimCSE

sys.path.insert(0, str(REPO / "demo"))
import drive  # noqa: E402
from drive import Client  # noqa: E402

BATCH = ["A man is playing a guitar.", "A man plays the guitar on stage.", "The stock market fell sharply.",
         "A cat sleeps on a warm windowsill."]
TRIPLES = [["A man is playing a guitar.", "A person plays music.", "A man is sleeping."],
           ["Two dogs run through a field.", "Animals are outside.", "The dogs are asleep indoors."],
           ["A woman slices an onion.", "Someone is cooking.", "A woman is swimming."]]


@pytest.fixture(scope="module")
def site(tiny_checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    corpus, runs = make_site(tmp)
    process, url, _ = drive.start_demo("--model", tiny_checkpoint, "--corpus", str(corpus),
                                       "--runs", str(runs))
    client = Client(url)
    yield client, runs, tmp
    drive.stop(process)


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    return BertModel.from_pretrained(tiny_checkpoint), load_tokenizer(tiny_checkpoint)


def alive(client):  # the server answers the next request
    status, info = client.get("/api/info")
    assert status == 200 and "A" in info["models"]


def views_of(model, tokenizer, blocks, p, pooler, seed, fixed_mask=False):
    """The views as train.py makes them: train mode, dropout p, this seed."""
    model.set_dropout(p)
    model.train()
    torch.manual_seed(seed)
    with torch.no_grad():
        return simcse.embed_views(model, tokenizer(sum(blocks, []), 32), len(blocks), pooler, fixed_mask)


@pytest.mark.parametrize("supervised", [False, True])
def test_views_equal_contrastive_loss_and_a_recomputation(site, tiny, supervised):
    client, _, _ = site
    request = {"p": 0.1, "temp": 0.05, "pooler": "avg", "seed": 7}
    if supervised:
        request.update(supervised=True, triples=TRIPLES, hard_negative_weight=0.7)
        blocks = [[t[k] for t in TRIPLES] for k in range(3)]
    else:
        request.update(sentences=BATCH)
        blocks = [BATCH, BATCH]
    status, r = client.post("/api/views", request)
    assert status == 200, r
    z = views_of(*tiny, blocks, 0.1, "avg", 7)  # the same masks: the seed came with the request
    weight = request.get("hard_negative_weight", 0.0)
    assert r["loss"] == pytest.approx(simcse.contrastive_loss(z, 0.05, weight).item(), abs=1e-5)

    # Recomputed here in float64 from the same embeddings: eq. 1 (eq. 5: hard negatives, w on a row's own)
    u = torch.nn.functional.normalize(z.double(), dim=-1).numpy()
    n = u.shape[1]
    cos = u[0] @ np.concatenate(list(u[1:])).T
    logits = cos / 0.05
    if supervised:
        logits[np.arange(n), n + np.arange(n)] += weight
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert np.allclose(r["cos"], cos, atol=1e-5)
    assert np.allclose(r["softmax"], softmax, atol=1e-5)
    assert np.allclose(r["row_loss"], -np.log(softmax[np.arange(n), np.arange(n)]), atol=1e-4)
    assert r["loss"] == pytest.approx(np.mean(r["row_loss"]), abs=1e-5)
    assert r["top1"] == int((logits.argmax(1) == np.arange(n)).sum())
    assert r["chance"] == pytest.approx(math.log(cos.shape[1]))


def test_p0_and_a_fixed_mask_make_each_positive_its_anchor(site):
    client, _, _ = site
    diagonal = lambda body: np.diagonal(client.post("/api/views", {"sentences": BATCH, "pooler": "avg",
                                                                   **body})[1]["cos"])
    assert diagonal({"p": 0.1}).max() < 0.999  # dropout: two views, two vectors
    assert diagonal({"p": 0.0}).min() > 1 - 1e-6
    assert diagonal({"p": 0.3, "fixed_mask": True}).min() > 1 - 1e-6  # Table 3's "Fixed 0.1"
    status, curve = client.post("/api/dropout-curve", {"sentences": BATCH, "pooler": "avg", "seed": 3})
    assert status == 200 and [q["p"] for q in curve["points"]] == list(demo.CURVE_P)
    assert curve["points"][0]["positive"] > 1 - 1e-6 and curve["points"][-1]["positive"] < 0.99


def test_two_browsers_at_once_get_their_own_reproducible_answers(site):
    client, _, _ = site
    requests = [{"sentences": BATCH, "p": 0.1, "pooler": "avg", "seed": 1},
                {"sentences": BATCH[:3], "p": 0.4, "pooler": "cls", "temp": 0.2, "seed": 2}]
    alone = [client.post("/api/views", r)[1] for r in requests]
    assert alone[0] != client.post("/api/views", {**requests[0], "seed": 5})[1]  # new masks
    answers = [[], []]

    def browser(i):
        for _ in range(6):
            answers[i].append(client.post("/api/views", requests[i])[1])

    threads = [threading.Thread(target=browser, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [[alone[0]] * 6, [alone[1]] * 6]  # interleaved on one model, nothing leaked


def test_similarity_and_search_equal_simcse(site, tiny_checkpoint):
    client, _, tmp = site
    tool = SimCSE(tiny_checkpoint, device="cpu")
    others = ["A man plays music.", "The market fell.", "A cat naps."]
    status, r = client.post("/api/similarity", {"sentence": BATCH[0], "others": others})
    assert status == 200 and np.allclose(r["scores"], tool.similarity(BATCH[0], others), atol=1e-6)
    tool.build_index(str(tmp / "corpus.txt"))
    status, r = client.post("/api/search", {"query": "A man plays the guitar.", "top_k": 4, "threshold": -1})
    expected = tool.search("A man plays the guitar.", threshold=-1, top_k=4)
    assert status == 200 and [h["sentence"] for h in r["hits"]] == [s for s, _ in expected]
    assert np.allclose([h["score"] for h in r["hits"]], [c for _, c in expected], atol=1e-6)
    cut = expected[1][1]  # a threshold that keeps the best two
    status, r = client.post("/api/search", {"query": "A man plays the guitar.", "top_k": 4, "threshold": cut})
    assert [h["sentence"] for h in r["hits"]] == [s for s, _ in expected[:2]]


BAD = [  # (path, body, status, what the message says)
    ("/api/views", {"sentences": ["A man plays.", "   "]}, 400, "number 2 is empty"),
    ("/api/views", {"sentences": ["A man plays."]}, 400, "a batch of one has no in-batch negatives"),
    ("/api/views", {"sentences": ["x"] * 33}, 400, "33 given, expected 2 to 32"),
    ("/api/views", {"sentences": ["a" * 1001, "b"]}, 400, "1001 characters; at most 1000"),
    ("/api/views", {"sentences": "A man plays."}, 400, "expected a list of sentences"),
    ("/api/views", {"sentences": BATCH, "p": 1.5}, 400, "p must be a number from 0 to 0.9"),
    ("/api/views", {"sentences": BATCH, "p": "0.1"}, 400, "p must be a number"),
    ("/api/views", {"sentences": BATCH, "temp": 0}, 400, "temp must be a number from 0.001"),
    ("/api/views", {"sentences": BATCH, "pooler": "max"}, 400, "pooler 'max' is not one of cls"),
    ("/api/views", {"sentences": BATCH, "seed": -1}, 400, "seed must be an integer"),
    ("/api/views", {"sentences": BATCH, "fixed_mask": "yes"}, 400, "must be true or false"),
    ("/api/views", {"supervised": True, "triples": [["a", "b"]]}, 400, "rows of three sentences"),
    ("/api/views", {"supervised": True, "triples": [TRIPLES[0]]}, 400, "no in-batch negatives"),
    ("/api/views", {"sentences": BATCH, "model": "C"}, 400, "model 'C': no such model"),
    ("/api/similarity", {"sentence": "", "others": ["a"]}, 400, "sentence: type a sentence"),
    ("/api/similarity", {"sentence": "a", "others": []}, 400, "others: 0 given, expected 1 to 32"),
    ("/api/search", {"query": "a", "top_k": 0}, 400, "top_k must be an integer from 1 to 100"),
    ("/api/search", {"query": "a", "threshold": 2}, 400, "threshold must be a number from -1 to 1"),
    ("/api/search", {}, 400, "query: type a sentence"),
    ("/api/model", {"model": "B", "path": "/no/such/model"}, 400, "/no/such/model: model folder not found"),
    ("/api/model", {"model": "A", "path": str(REPO / "results")}, 400,
     "results/config.json: file not found; model A is still"),  # a folder of no checkpoint: said at once
    ("/api/views", b"{not json", 400, "the request is not valid JSON"),
    ("/api/views", b"[1, 2]", 400, "must be a JSON object"),
    ("/api/views", b"\xff\xfe", 400, "not valid JSON"),
    ("/api/nothing", {}, 404, "no such page"),
]


@pytest.mark.parametrize("path, body, status, message", BAD, ids=[m for *_, m in BAD])
def test_a_bad_request_gets_a_message_and_the_server_goes_on(site, path, body, status, message):
    client, _, _ = site
    got, answer = client.post(path, body)
    assert (got, message in answer["error"]) == (status, True), answer
    alive(client)


def test_malformed_http_gets_a_message_and_the_server_goes_on(site):
    client, _, _ = site
    status, _, body = client.raw("POST", "/api/views", b'{"sentences": []}', {"Content-Type": "text/plain"})
    assert status == 415 and b"application/json" in body  # what another site's form would send
    status, _, body = client.raw("POST", "/api/views", b"{}", {"Content-Type": "application/json",
                                                                  "Content-Length": str(demo.MAX_BODY + 1)})
    assert status == 413 and b"at most" in body
    assert client.get("/api/views")[0] == 405
    status, answer = client.get("/api/info", headers={"Host": "evil.example:80"})  # DNS rebinding
    assert status == 403 and "answers only 127.0.0.1" in answer["error"]
    alive(client)


def test_text_longer_than_the_max_length_is_cut_and_said(site):
    client, _, _ = site
    long = " ".join(["word"] * 60) + "."
    status, r = client.post("/api/views", {"sentences": [long, BATCH[0]]})
    assert status == 200 and r["notes"] == [f'"{long[:40]}…" is longer than 32 tokens: the model reads its '
                                            f'first 32']
    status, r = client.post("/api/similarity", {"sentence": BATCH[0], "others": [" ".join(["word"] * 200)]})
    assert status == 200 and "longer than 128 tokens" in r["notes"][0]


def test_a_model_that_fails_to_load_keeps_the_one_before(site, tiny_checkpoint):
    client, _, tmp = site
    assert client.post("/api/model", {"model": "B", "path": tiny_checkpoint})[0] == 200
    status, answer = client.post("/api/model", {"model": "B", "path": str(tmp / "runs")})
    assert status == 400 and answer["error"].endswith(f"model B is still {tiny_checkpoint}")
    status, info = client.get("/api/info")
    assert info["models"]["B"]["path"] == tiny_checkpoint
    assert client.post("/api/views", {"sentences": BATCH, "model": "B"})[0] == 200


def test_runs_are_read_damaged_ones_said_and_nothing_written(site):
    client, runs, _ = site
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in runs.rglob("*") if p.is_file()}
    status, r = client.get("/api/runs")
    assert status == 200
    found = {run["path"]: run for run in r["runs"]}
    assert sorted(found) == ["damaged", "linked", "quick", "starting"]  # not elsewhere/: a link
    keys = ("step", "loss", "stsb_dev", "align", "uniform")
    assert found["quick"]["records"] == [{k: rec[k] for k in keys} for rec in RECORDS]
    damaged = "runs/damaged/log.jsonl:2: not valid JSON (Expecting ',' delimiter): damaged?"
    assert found["damaged"]["error"] == damaged
    assert found["starting"]["error"] == "runs/starting: no log.jsonl: the run has not been evaluated yet"
    assert "outside the run folders" in found["linked"]["error"] and not found["linked"]["records"]
    [report] = r["reports"]
    assert report["png"] == "table3.png"
    assert report["markdown"] == (REPO / "results" / "table3.md").read_text()
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in runs.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("path, status", [("table3.png", 200), ("../outside/secret.txt", 403),
                                          ("%2e%2e/outside/secret.txt", 403), ("/etc/hostname", 403),
                                          ("secret.txt", 403), ("elsewhere/secret.txt", 403),
                                          ("quick/missing.png", 404)])
def test_only_files_inside_the_run_folders_are_served(site, path, status):
    client, runs, _ = site
    got, body = client.get(f"/file?root=0&path={path}")
    assert got == status
    if status == 200:
        assert body == (runs / path).read_bytes()
    else:
        assert b"not to be served" not in json.dumps(body).encode()
    got, _ = client.get(f"/file?root=1&path={path}")
    assert got == 404  # there is one run folder
    alive(client)


def test_command_errors_are_one_line_before_any_model_loads(tmp_path, capsys):
    bad = tmp_path / "corpus.txt"
    bad.write_bytes(b"A man plays a guitar.\n\xff\xfe a broken line\n")
    for argv, message in [(["--corpus", str(bad)], f"error: {bad}:2: not valid UTF-8"),
                          (["--corpus", str(tmp_path / "none.txt")], "none.txt': no such file"),
                          (["--runs", str(tmp_path / "none")], "--runs " + str(tmp_path / "none")),
                          (["--corpus", str(REPO / "README.md"), "--model", str(tmp_path / "m")],
                           "model folder not found")]:
        with pytest.raises(SystemExit) as exit:
            demo.main(argv)
        assert message in str(exit.value.code) and str(exit.value.code).startswith("error: ")


def test_the_default_corpus_is_the_stsb_dev_sentences(data_root):
    import data
    dev = data.load_sts("STSBenchmark", data_root, ["dev"])["dev"]
    corpus, name = demo.load_corpus(Namespace(corpus=None, data_dir=str(data_root)))
    assert corpus == list(dict.fromkeys(dev.sent1 + dev.sent2)) and name == "STS-B dev sentences"
