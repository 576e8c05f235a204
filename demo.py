"""A page for teaching SimCSE in a browser: two dropout views of a real batch and the loss they give (section
3, eq. 1; eq. 5), the authors' similarity and search demos, training runs (Figure 2: alignment and
uniformity), and two models side by side.

    python demo.py                                  # the packaged MiniLM at http://127.0.0.1:<a free port>/
    python demo.py --model runs/quick/best --compare MODEL --runs runs results --corpus sentences.txt

A server on the standard library (http.server) with a JSON API, and one static page (demo/: HTML, CSS and
plain JavaScript, figures drawn in the page): no framework, nothing fetched from the network. The views and
the loss are simcse.py's (embed_views, contrastive_loss), similarities and search tool.py's (SimCSE); the
page computes nothing, it draws the numbers it is sent. docs/demo.md says what each view teaches.
"""
from formats.command_line import FOLDER, INPUT_FILE, TEXT, Parser, checked, command_errors, quiet_start
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import json
import math
import mimetypes
import os
import sys
import threading
import time
import traceback
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch
import torch.nn.functional as F

import data
import simcse
from formats.checkpoint import check_model, default_model
from formats.files import read_text
from infra.cli import add_common_flags
from tool import SimCSE, read_corpus

REPO = Path(__file__).resolve().parent
PAGE = {"/": "index.html", "/demo.js": "demo.js", "/demo.css": "demo.css"}  # the only files of demo/ served
MAX_SENTENCES, MAX_CHARS, MAX_BODY = 32, 1000, 1 << 20  # per request: a 32 x 32 matrix is what a page shows
VIEW_TOKENS, TOOL_TOKENS = 32, 128  # train.py's --max-length for the views; SimCSE.encode's for the tool
CURVE_P = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # the dropout rates of Table 3 and the plot beside it
INDEX_CHUNK = 128  # sentences indexed per hold of the lock: the views stay live while a corpus is indexed
FORWARD = threading.Lock()  # one model call at a time: each request sets dropout, mode and seed under it


class Refused(Exception):
    """A request the server answers with an error message (HTTP status, one line) and goes on."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# --- The models: SimCSE's tool, and its index of the corpus ---------------------------------------------

class Slot:
    """A model of the page (A: --model; B: --compare, or either loaded from the page) and its index of the
    corpus, built in the background INDEX_CHUNK sentences at a time."""

    def __init__(self, path, pooler=None):
        with warnings.catch_warnings(record=True) as caught:  # e.g. "no pooler weights": said in the page
            warnings.simplefilter("always")
            self.tool = SimCSE(path, pooler=pooler)
        self.path, self.notes = path, [str(w.message) for w in caught]
        self.dropout = self.tool.model.config.hidden_dropout_prob  # its own; each view request sets p
        self.indexed, self.index_error, self.stopped = 0, None, False

    def build_index(self, corpus):
        corpus = sorted(corpus, key=len)  # sentences of a length together: each chunk's batches pad little
        try:
            for start in range(0, len(corpus), INDEX_CHUNK):
                with FORWARD:
                    if self.stopped:  # replaced by another model
                        return
                    add = self.tool.build_index if start == 0 else self.tool.add_to_index
                    add(corpus[start:start + INDEX_CHUNK])
                    self.indexed = len(self.tool.index["sentences"])
                time.sleep(0.01)  # a request waiting for the lock takes it now (a Lock is not a queue)
        except Exception as e:  # e.g. out of memory: the search view says so, the rest goes on
            self.index_error = f"indexing failed: {type(e).__name__}: {e}"

    def describe(self, corpus):
        c = self.tool.model.config
        return {"path": self.path, "pooler": self.tool.pooler, "notes": self.notes, "hidden": c.hidden_size,
                "layers": c.num_hidden_layers, "dropout": self.dropout, "indexed": self.indexed,
                "corpus_size": len(corpus or ()), "index_error": self.index_error}


# --- Checking a request --------------------------------------------------------------------------------

def number(body, name, low, high, default):
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise Refused(f"{name} must be a number from {low} to {high}, got {value!r}")
    return value


def sentences(value, what, least, most=MAX_SENTENCES, why=""):
    """least..most sentences, none blank, none over MAX_CHARS characters; else a one-line refusal."""
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise Refused(f"{what}: expected a list of sentences (strings), got {json.dumps(value)[:80]}")
    if not least <= len(value) <= most:
        raise Refused(f"{what}: {len(value)} given, expected {least} to {most}{why}")
    for i, s in enumerate(value, 1):
        if not s.strip():
            raise Refused(f"{what}: number {i} is empty: type a sentence or delete the line")
        if len(s) > MAX_CHARS:
            raise Refused(f"{what}: number {i} has {len(s)} characters; at most {MAX_CHARS}")
    return [s.strip() for s in value]


def one_sentence(body, name):
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Refused(f"{name}: type a sentence (got {json.dumps(value)[:80]})")
    return sentences([value], name, 1)[0]


def truncated(tokenizer, sentences, limit):
    """What the page says about sentences longer than `limit` tokens: the model reads only their start."""
    sentences = list(dict.fromkeys(sentences))  # each once: the two views are the same sentences
    with FORWARD:  # the tokenizer's truncation and padding are settings of one shared object
        lengths = tokenizer(sentences, max_length=limit + 1)["attention_mask"].sum(1).tolist()
    cut = [s for s, n in zip(sentences, lengths) if n > limit]
    return [f'"{s[:40]}…" is longer than {limit} tokens: the model reads its first {limit}' for s in cut]


# --- View 1: two dropout views of a batch, and the contrastive loss (section 3, eq. 1; eq. 5) --------------

def embed(slot, blocks, p, pooler, fixed_mask, seed):
    """simcse.embed_views of the blocks (two copies of the batch; or premises, entailments, contradictions)
    in train mode with dropout p and this request's seed: the same request gets the same masks."""
    tool = slot.tool
    with FORWARD, torch.no_grad():
        batch = {k: v.to(tool.device) for k, v in tool.tokenizer(sum(blocks, []), VIEW_TOKENS).items()}
        tool.model.set_dropout(p)
        tool.model.train()  # dropout on: the only augmentation of unsupervised SimCSE
        torch.manual_seed(seed)
        z = simcse.embed_views(tool.model, batch, len(blocks), pooler, fixed_mask)
        tool.model.eval()  # as SimCSE's own calls expect it
    return z.float().cpu()


def view_settings(slot, body):
    if any(body.get(k, False) not in (True, False) for k in ("supervised", "fixed_mask")):
        raise Refused("supervised and fixed_mask must be true or false")
    no_negatives = " (a batch of one has no in-batch negatives: eq. 1 needs the other sentences)"
    if body.get("supervised"):
        rows = body.get("triples")
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 3 for r in rows):
            raise Refused("triples: expected rows of three sentences: premise | entailment | contradiction")
        if not 2 <= len(rows) <= MAX_SENTENCES // 3:
            raise Refused(f"triples: {len(rows)} given, expected 2 to {MAX_SENTENCES // 3}{no_negatives}")
        flat = sentences(sum(rows, []), "sentences of the triples", 6, MAX_SENTENCES)
        blocks = [flat[0::3], flat[1::3], flat[2::3]]  # eq. 5: h_i, h_i+ (entailment), h_i- (contradiction)
    else:
        batch = sentences(body.get("sentences"), "sentences", 2, MAX_SENTENCES, no_negatives)
        blocks = [batch, batch]  # the same sentences twice: two dropout masks, two views
    pooler = body.get("pooler", slot.tool.pooler)
    if pooler not in simcse.POOLERS:
        raise Refused(f"pooler {pooler!r} is not one of {', '.join(simcse.POOLERS)}")
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise Refused(f"seed must be an integer from 0 to 2^32 - 1, got {seed!r}")
    return blocks, pooler, bool(body.get("fixed_mask")), seed


def two_views(slot, body):
    """The N x N (or N x 2N) cosines of the views, the softmax of each row at temperature tau, each row's
    loss and the batch's (simcse.contrastive_loss), the in-batch top-1 accuracy."""
    blocks, pooler, fixed_mask, seed = view_settings(slot, body)
    p = number(body, "p", 0, 0.9, 0.1)
    temp = number(body, "temp", 0.001, 10, 0.05)
    weight = number(body, "hard_negative_weight", -10, 10, 0.0) if len(blocks) == 3 else 0.0
    z = embed(slot, blocks, p, pooler, fixed_mask, seed)  # (views, N, d)
    loss = simcse.contrastive_loss(z, temp, weight).item()  # the loss the page shows
    # What that loss reads, drawn on the page: row i of cos(h_i, h_j+) / tau (eq. 1), with the hard
    # negatives' columns and anchor i's own weighted by w (eq. 5); its softmax; -log of its diagonal.
    logits, labels = simcse.logits(z, temp, weight)
    n = z.shape[1]
    cos, _ = simcse.logits(z, temp=1.0)  # the heat map's numbers: the cosines themselves
    softmax = logits.softmax(-1)
    row_loss = -softmax.diagonal().log()
    return {"cos": cos.tolist(), "softmax": softmax.tolist(), "row_loss": row_loss.tolist(), "loss": loss,
            "chance": math.log(cos.shape[1]), "top1": (logits.argmax(-1) == labels).sum().item(),
            "n": n, "notes": truncated(slot.tool.tokenizer, sum(blocks, []), VIEW_TOKENS)}


def dropout_curve(slot, body):
    """The mean cosine of the positive pairs (the diagonal) and of the negatives against p: Table 3's
    picture -- at p = 0 the positive is the anchor itself."""
    blocks, pooler, fixed_mask, seed = view_settings(slot, body)
    points = []
    for p in CURVE_P:
        z = F.normalize(embed(slot, blocks, p, pooler, fixed_mask, seed), dim=-1)
        cos = z[0] @ z[1].T  # anchors x positives
        n = len(cos)
        points.append({"p": p, "positive": cos.diagonal().mean().item(),
                       "negative": ((cos.sum() - cos.diagonal().sum()) / (n * n - n)).item()})
    return {"points": points}


# --- Views 2 and 3: the authors' similarity and search demos, through SimCSE ---------------------------

def similarity(slot, body):
    sentence, others = one_sentence(body, "sentence"), sentences(body.get("others"), "others", 1)
    with FORWARD:
        scores = slot.tool.similarity(sentence, others)
    notes = truncated(slot.tool.tokenizer, [sentence] + others, TOOL_TOKENS)
    return {"scores": [float(s) for s in scores], "notes": notes}


def search(slot, corpus, corpus_name, body):
    query = one_sentence(body, "query")
    top_k = body.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 100:
        raise Refused(f"top_k must be an integer from 1 to 100, got {top_k!r}")
    threshold = number(body, "threshold", -1, 1, 0.6)
    if corpus is None or slot.index_error:
        raise Refused(slot.index_error or f"no corpus to search: {corpus_name}", 503)
    if slot.indexed < len(corpus):
        raise Refused(f"the index is being built ({slot.indexed} of {len(corpus)} sentences): try again in "
                      "a moment", 503)
    with FORWARD:
        hits = slot.tool.search(query, threshold, top_k)
    return {"hits": [{"sentence": s, "score": c} for s, c in hits],
            "notes": truncated(slot.tool.tokenizer, [query], TOOL_TOKENS)}


# --- View 4: training runs (Figure 2), read from the folders given and never written ----------------------

def inside(roots, root, rel):
    """The path `rel` in roots[root], resolved; refused if it leads outside it (.., an absolute path, a
    symbolic link)."""
    if isinstance(root, str) and root.isdigit():
        root = int(root)
    if not isinstance(root, int) or not 0 <= root < len(roots) or not isinstance(rel, str):
        raise Refused("expected a run folder's number (root) and a path in it", 404)
    try:
        path = (roots[root] / rel).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links
        raise Refused(f"{rel!r}: not a file in the run folders", 404) from None
    if os.path.isabs(rel) or ".." in Path(rel).parts or not path.is_relative_to(roots[root]):
        raise Refused(f"{rel!r}: outside the run folders; only files in them are served", 403)
    return path


def read_log(folder, name):
    """log.jsonl's evaluations: step, loss, STS-B dev, alignment, uniformity (run_folder.py)."""
    path = folder / "log.jsonl"
    if not path.is_file():
        raise ValueError(f"{name}: no log.jsonl: the run has not been evaluated yet")
    records = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}/log.jsonl:{n}: not valid JSON ({e.msg}): damaged?") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(f"{name}/log.jsonl:{n}: not an evaluation record (no step): damaged?")
        finite = lambda v: v if isinstance(v, (int, float)) and math.isfinite(v) else None
        records.append({k: finite(record.get(k)) for k in ("step", "loss", "stsb_dev", "align", "uniform")})
    return records


def find_runs(roots, depth=4):
    """Every run folder (one with log.jsonl or run.json) and ablate.py report (TABLE.md beside TABLE.json)
    under the roots; checkpoints (best/, last/) and symbolic links are not entered."""
    runs, reports = [], []
    for i, root in enumerate(roots):
        for folder, dirs, files in os.walk(root):
            rel = Path(folder).relative_to(root)
            dirs[:] = sorted(d for d in dirs if d not in ("best", "last") and len(rel.parts) < depth)
            name = str(Path(root.name) / rel)
            if "log.jsonl" in files or "run.json" in files:
                run = {"root": i, "path": str(rel), "name": name, "records": [], "error": None}
                try:
                    inside(roots, i, str(rel / "log.jsonl"))  # a link to a log elsewhere is not read
                    run["records"] = read_log(inside(roots, i, str(rel)), name)
                except (ValueError, OSError, Refused) as e:
                    run["error"] = str(e)
                runs.append(run)
            for md in sorted(f for f in files if f.endswith(".md") and f[:-3] + ".json" in files):
                try:
                    report = json.loads(read_text(inside(roots, i, str(rel / (md[:-3] + ".json")))))
                    text = read_text(inside(roots, i, str(rel / md)))
                except (ValueError, OSError, Refused):
                    continue
                if isinstance(report, dict) and "table" in report and "rows" in report:
                    png = rel / (md[:-3] + ".png")
                    reports.append({"root": i, "name": str(Path(root.name) / rel / md), "markdown": text,
                                    "png": str(png) if (root / png).is_file() else None})
    return {"roots": [str(r) for r in roots], "runs": runs, "reports": reports}


def table3_numbers():
    """p = 0 against p = 0.1 on STS-B dev: the paper's Table 3 and this project's results/table3.json."""
    try:
        report = json.loads(read_text(REPO / "results" / "table3.json"))
        ours = {r["label"]: r["ours"]["mean"] for r in report["rows"]}
        return {"p0": ours["p = 0"], "p01": ours["p = 0.1"], "command": report["command"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- The server ------------------------------------------------------------------------------------------

class Demo:
    """What the page's requests read: the models, the corpus, the run folders."""

    def __init__(self, slots, corpus, corpus_name, roots):
        self.slots, self.corpus, self.corpus_name, self.roots = slots, corpus, corpus_name, roots
        self.loading = threading.Lock()  # one model loaded at a time

    def slot(self, body):
        slot = self.slots.get(body.get("model", "A"))
        if slot is None:
            raise Refused(f"model {body.get('model')!r}: no such model; load one first (A or B)")
        return slot

    def index(self, slot):
        if self.corpus is not None:
            threading.Thread(target=slot.build_index, args=(self.corpus,), daemon=True).start()

    def load(self, body):
        """Load a model into A or B; if that fails, the message says why and the model before stays."""
        name, path = body.get("model"), body.get("path")
        if name not in ("A", "B") or not isinstance(path, str) or not path.strip():
            raise Refused("expected model (A or B) and path (a checkpoint folder or hub id)")
        with self.loading:
            try:
                check_model(path.strip())
                slot = Slot(path.strip())
            except (OSError, ValueError, KeyError) as e:
                kept = f"; model {name} is still {self.slots[name].path}" if name in self.slots else ""
                raise Refused(f"{e.args[0] if isinstance(e, KeyError) else e}{kept}") from None
            old, self.slots[name] = self.slots.get(name), slot
            if old:
                old.stopped = True
            self.index(slot)
        return self.info({})

    def info(self, query):
        return {"models": {k: s.describe(self.corpus) for k, s in self.slots.items()},
                "corpus": self.corpus_name, "poolers": simcse.POOLERS, "table3": table3_numbers(),
                "limits": {"sentences": MAX_SENTENCES, "characters": MAX_CHARS, "view_tokens": VIEW_TOKENS}}

    def run_file(self, query):
        path = inside(self.roots, query.get("root"), query.get("path"))
        if not path.is_file():
            raise Refused(f"{query.get('path')}: no such file in the run folders", 404)
        return path

    ROUTES = {("GET", "/api/info"): info,
              ("GET", "/api/runs"): lambda self, q: find_runs(self.roots),
              ("POST", "/api/views"): lambda self, b: two_views(self.slot(b), b),
              ("POST", "/api/dropout-curve"): lambda self, b: dropout_curve(self.slot(b), b),
              ("POST", "/api/similarity"): lambda self, b: similarity(self.slot(b), b),
              ("POST", "/api/search"): lambda self, b: search(self.slot(b), self.corpus, self.corpus_name, b),
              ("POST", "/api/model"): load}


class Handler(BaseHTTPRequestHandler):
    """GET: the page, /api/info, /api/runs, /file?root=&path= (a file of a run folder); POST: JSON in, JSON
    out. Every error is a JSON {"error": one line} and the server goes on."""

    def do_GET(self):
        self.answer("GET")

    def do_POST(self):
        self.answer("POST")

    def answer(self, method):
        url, demo = urlsplit(self.path), self.server.demo
        try:
            self.check_host()
            if method == "GET" and url.path in PAGE:
                return self.send(200, (REPO / "demo" / PAGE[url.path]).read_bytes(),
                                 mimetypes.guess_type(PAGE[url.path])[0] + "; charset=utf-8")
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if method == "GET" and url.path == "/file":
                path = demo.run_file(query)
                return self.send(200, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "text/plain")
            route = Demo.ROUTES.get((method, url.path))
            if route is None:
                known = any(path == url.path for _, path in Demo.ROUTES)
                raise Refused(f"{method} {url.path}: " + ("not this method" if known else "no such page"),
                              405 if known else 404)
            result = route(demo, self.read_body() if method == "POST" else query)
            self.send(200, json.dumps(result, allow_nan=False).encode(), "application/json")
        except Refused as e:
            self.send(e.status, json.dumps({"error": str(e)}).encode(), "application/json")
        except Exception as e:  # a bug, not the user's input: said in the page, the traceback here
            traceback.print_exc()
            message = f"internal error ({type(e).__name__}: {e}); the server goes on"
            self.send(500, json.dumps({"error": message}).encode(), "application/json")

    def check_host(self):
        """On a loopback address, only requests to a loopback name: a web page whose name resolves to
        127.0.0.1 (DNS rebinding) is not served."""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if self.server.loopback and host not in ("127.0.0.1", "localhost", "::1"):
            raise Refused(f"Host {host!r}: this server answers only 127.0.0.1 and localhost", 403)

    def read_body(self):
        if self.headers.get_content_type() != "application/json":  # so no other site's form can post here
            raise Refused("expected a JSON body (Content-Type: application/json)", 415)
        size = self.headers.get("Content-Length", "")
        if not size.isdigit():
            raise Refused("expected a Content-Length", 411)
        if int(size) > MAX_BODY:
            self.close_connection = True  # the body is not read
            raise Refused(f"a request of {int(size)} bytes; at most {MAX_BODY}", 413)
        try:
            body = json.loads(self.rfile.read(int(size)).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise Refused(f"the request is not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise Refused("the request must be a JSON object")
        return body

    def send(self, status, payload, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # quiet: errors are answered to the page
        pass


def load_corpus(args):
    """--corpus, else the STS-B dev sentences of the data folder (the authors' demo searches STS-B)."""
    if args.corpus:
        return read_corpus(args.corpus), args.corpus
    root = data.data_dir(args.data_dir)
    if not (root / "senteval").is_dir():  # never a download behind the user's back
        return None, f"none: no {root / 'senteval'} (pass --corpus FILE, or python data.py download)"
    dev = data.load_sts("STSBenchmark", root, ["dev"])["dev"]
    return list(dict.fromkeys(dev.sent1 + dev.sent2)), "STS-B dev sentences"


PORT = checked(int, "a port in [0, 65535] (0: a free one)", lambda v: 0 <= v < 65536)


def main(argv=None):
    parser = Parser(description="A page for teaching SimCSE: two dropout views of a batch, similarity, "
                                "search, training runs, two models.")  # every flag checked as it is read
    add_common_flags(parser, precision=False)  # --model, --pooler, --data-dir
    parser.add_argument("--compare", type=TEXT,
                        help="a second model, beside --model in the Before and after view")
    parser.add_argument("--runs", nargs="+", type=FOLDER,
                        help="folders of training runs and ablate.py reports (default: runs, results)")
    parser.add_argument("--corpus", type=INPUT_FILE,
                        help="sentences to search, one a line (default: the STS-B dev sentences)")
    parser.add_argument("--host", default="127.0.0.1", type=TEXT,
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=PORT, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    with command_errors():
        corpus, corpus_name = load_corpus(args)  # every input checked before a model is loaded
        models = {"A": args.model or default_model(), **({"B": args.compare} if args.compare else {})}
        for path in models.values():
            check_model(path)
        for folder in args.runs or ():
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"--runs {folder}: no such folder")
        roots = [Path(f).resolve() for f in args.runs or ("runs", REPO / "results") if Path(f).is_dir()]
        demo = Demo({k: Slot(path, args.pooler) for k, path in models.items()}, corpus, corpus_name, roots)
        try:
            server = ThreadingHTTPServer((args.host, args.port), Handler)
        except OSError as e:
            raise OSError(f"--host {args.host} --port {args.port}: {e.strerror or e}") from None
        server.demo, server.daemon_threads = demo, True
        server.loopback = args.host in ("127.0.0.1", "localhost", "::1")
        for slot in demo.slots.values():
            demo.index(slot)
        host, port = server.server_address[:2]
        print(f"simcse demo: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
        if not server.loopback:
            print(f"--host {args.host}: anyone who reaches this address can use the page", file=sys.stderr)
        server.serve_forever()


if __name__ == "__main__":
    main()
