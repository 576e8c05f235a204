"""Using a trained SimCSE model: its sentence embeddings (`encode`, which every command of this project
uses, and the embedding a checkpoint was trained for), the authors' tool (their simcse/tool.py: encode,
similarity, search) and its command line.

    python tool.py encode --model runs/quick/best --input sentences.txt --output embeddings.npy
    python tool.py search --model runs/quick/best --corpus sentences.txt --query "A man plays a guitar."

`from tool import SimCSE` (the authors' package spells it `from simcse import SimCSE`), from this folder or
with it on PYTHONPATH.
"""
from formats.command_line import (INPUT_FILE, NUMBER, OUTPUT_FILE, SIZE, TEXT, Parser, command_errors,
                                  file_problem, quiet_start)
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import io
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from formats import training_files
from bert import BertModel
from formats.checkpoint import check_model, checkpoint_file
from formats.files import write_files
from infra.cli import add_common_flags
from infra.cli import device as cli_device
from simcse import POOLERS, embedding_pooler, pool
from infra.speed import autocast, autocast_dtype
from formats.tokenizer import load_tokenizer

# --- A model's sentence embeddings: every command encodes with these ---------------------------------

@torch.inference_mode()
def encode(model, tokenizer, sentences, pooler="cls", batch_size=128, max_length=None, progress=False,
           chunk=32768, precision="fp32"):
    """Embeddings (len(sentences), hidden) in eval mode. Each distinct sentence is encoded once, in batches
    of sentences of similar length (little padding), tokenised `chunk` sentences at a time (bounded
    memory)."""
    if batch_size < 1:  # range() would encode nothing, and the rows stay uninitialised memory
        raise ValueError(f"batch size {batch_size}: expected an integer of at least 1")
    model_was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = autocast_dtype(device, precision)  # fp32 by default: the numbers SentEval gives
    unique = list(dict.fromkeys(sentences))
    embeddings = torch.empty(len(unique), model.config.hidden_size)
    bar = tqdm(total=len(unique), desc="encode", disable=not progress, leave=False)
    for first in range(0, len(unique), chunk):
        tokens = tokenizer(unique[first:first + chunk], max_length=max_length)  # padded to the longest
        lengths = tokens["attention_mask"].sum(1)
        order = torch.argsort(lengths, descending=True, stable=True)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v[idx, :int(lengths[idx].max())].to(device) for k, v in tokens.items()}  # cut padding
            with autocast(device, dtype):
                out = model(**batch, output_hidden_states=pooler.startswith("avg"))
            embeddings[first + idx] = pool(out, batch["attention_mask"], pooler).float().cpu()
            bar.update(len(idx))
    bar.close()
    model.train(model_was_training)
    position = {s: i for i, s in enumerate(unique)}
    return embeddings[[position[s] for s in sentences]]


def checkpoint_pooler(model_name_or_path):
    """The embedding a checkpoint was trained for, from its train_config.json; "cls" without one, as the
    authors' tool, whose checkpoints keep the MLP there."""
    path = checkpoint_file(model_name_or_path, "train_config.json", required=False)
    if path is None:
        return "cls"
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    return embedding_pooler(cfg.get("pooler", "cls"), cfg.get("mlp_only_train", False))


def load_for_evaluation(model_name, pooler=None, device="cpu"):
    """(model, tokenizer, pooler) for the evaluation scripts; without a pooler, the checkpoint's own. Says
    which."""
    check_model(model_name)  # "not found" at once
    source = ("--pooler" if pooler else "the checkpoint's own, train_config.json"
              if checkpoint_file(model_name, "train_config.json", required=False)
              else "no train_config.json: cls, as the authors' tool; see --pooler")
    pooler = pooler or checkpoint_pooler(model_name)
    print(f"pooler {pooler} ({source})")
    return BertModel.from_pretrained(model_name).to(device), load_tokenizer(model_name), pooler


# --- Using a trained model: the authors' SimCSE tool (simcse/tool.py) -----------------------------

def read_corpus(path):
    """The sentences of a text file, one a line (blank lines skipped); a missing or empty file is an error."""
    if problem := file_problem(path):  # a folder or FIFO is no "no such file"; a FIFO would wait forever
        raise FileNotFoundError(f"{path}: {problem}")
    sentences, _ = training_files.read_sentences(path)
    if not sentences:
        raise ValueError(f"{path}: no sentences (the file is empty)")
    return sentences


class SimCSE:
    """Sentence embeddings, similarities and nearest-neighbour search with a trained checkpoint.

        model = SimCSE("runs/quick/best")
        model.similarity("A man plays a guitar.", ["Someone plays music.", "A cat sleeps."])  # array of 2
        model.build_index("sentences.txt")
        model.search("A man plays a guitar.", top_k=5)  # [(sentence, cosine), ...], best first

    The same calls and return shapes as the authors' tool. Search is exact (cosine of unit vectors, in
    chunks of the index so that a million sentences fit in memory, on the GPU when there is one)."""

    def __init__(self, model_name_or_path, device=None, pooler=None, precision="fp32"):
        if pooler is not None and pooler not in POOLERS:
            raise ValueError(f"unknown pooler {pooler!r}; expected one of {', '.join(POOLERS)}")
        check_model(model_name_or_path)  # "not found" at once, before any loading
        self.device = device or str(cli_device())
        autocast_dtype(torch.device(self.device), precision)  # a precision this hardware has
        self.pooler = pooler or checkpoint_pooler(model_name_or_path)
        self.tokenizer = load_tokenizer(model_name_or_path)
        self.model = BertModel.from_pretrained(model_name_or_path).to(self.device)
        self.precision = precision  # "bf16": about twice as fast on CPUs with AMX, cosines within ~1e-4
        self.index = None  # {"sentences": [...], "embeddings": (n, d) unit vectors}

    def encode(self, sentences, batch_size=64, max_length=128, normalize_to_unit=True, return_numpy=False,
               keepdim=False):
        """(n, d) embeddings of a list of sentences; (d,) of one sentence (unless keepdim)."""
        single = isinstance(sentences, str)
        sentences = [sentences] if single else list(sentences)
        if not sentences:
            raise ValueError("no sentences to encode")
        wrong = next((i for i, s in enumerate(sentences) if not isinstance(s, str)), None)
        if wrong is not None:  # the tokenizer's own error names neither the item nor its place
            raise TypeError(f"sentence {wrong} is {sentences[wrong]!r} ({type(sentences[wrong]).__name__}), "
                            "not a string")
        z = encode(self.model, self.tokenizer, sentences, self.pooler, batch_size, max_length,
                   progress=len(sentences) > 10 * batch_size, precision=self.precision)
        if normalize_to_unit:
            z = F.normalize(z, dim=-1)
        z = z[0] if single and not keepdim else z
        return z.numpy() if return_numpy else z

    def similarity(self, queries, keys):
        """Cosine similarities: a float for two sentences, else an array (queries x keys); keys may be
        embeddings."""
        q = self.encode(queries, keepdim=True)
        k = (torch.as_tensor(keys) if isinstance(keys, (np.ndarray, torch.Tensor))
             else self.encode(keys, keepdim=True))
        scores = (q @ F.normalize(k.reshape(-1, q.shape[1]).float(), dim=-1).T).numpy()
        if isinstance(queries, str):
            scores = scores[0]
            if isinstance(keys, str):
                return float(scores[0])
        return scores

    def build_index(self, sentences_or_file_path, batch_size=64):
        """Encode the sentences (a list, or a file of one sentence a line) to search them. If that fails, the
        index is the one before."""
        old, self.index = self.index, None
        try:
            self.add_to_index(sentences_or_file_path, batch_size)
        except BaseException:
            self.index = old
            raise

    def add_to_index(self, sentences_or_file_path, batch_size=64):
        sentences = sentences_or_file_path
        if isinstance(sentences, (str, os.PathLike)):
            sentences = read_corpus(sentences)
        embeddings = self.encode(sentences, batch_size, keepdim=True).to(self.device)
        if self.index is not None:
            sentences = self.index["sentences"] + list(sentences)
            embeddings = torch.cat([self.index["embeddings"], embeddings])
        self.index = {"sentences": list(sentences), "embeddings": embeddings}

    def search(self, queries, threshold=0.6, top_k=5):
        """The top_k most similar indexed sentences with a cosine of at least threshold, as (sentence, cosine)
        pairs, best first: a list for one query, a list of such lists for a list of queries."""
        if self.index is None:
            raise ValueError("no index: call build_index(sentences) first")
        if top_k <= 0:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        scores, ids = self.nearest(self.encode(queries, keepdim=True).to(self.device), top_k)
        results = [[(self.index["sentences"][i], s) for s, i in zip(row_s, row_i) if s >= threshold]
                   for row_s, row_i in zip(scores.tolist(), ids.tolist())]
        return results[0] if isinstance(queries, str) else results

    @torch.inference_mode()
    def nearest(self, queries, top_k, chunk=65536):
        """Exact top-k by cosine of unit vectors: (scores, index positions), each (queries, k), best first."""
        best_s = queries.new_empty(len(queries), 0)
        best_i = torch.empty(len(queries), 0, dtype=torch.long, device=queries.device)
        index = self.index["embeddings"]
        for start in range(0, len(index), chunk):
            s = queries @ index[start:start + chunk].T
            s, i = s.topk(min(top_k, s.shape[1]), dim=1)
            best_s, order = torch.cat([best_s, s], 1).topk(min(top_k, best_s.shape[1] + s.shape[1]), dim=1)
            best_i = torch.cat([best_i, i + start], 1).gather(1, order)
        return best_s.cpu(), best_i.cpu()


def main(argv=None):
    parser = Parser(description="Encode sentences or search a corpus with a SimCSE checkpoint.")
    sub = parser.add_subparsers(dest="command", required=True)  # (Parsers too: formats/command_line.py)
    enc = sub.add_parser("encode", help="embeddings of a file of sentences (one a line) to a .npy file")
    enc.add_argument("--input", required=True, type=INPUT_FILE,
                     help="a text file, one sentence a line (blank lines skipped)")
    enc.add_argument("--output", required=True, type=OUTPUT_FILE,
                     help="where to write the (sentences, dim) float32 array (.npy)")
    search = sub.add_parser("search", help="the nearest sentences of a corpus file to each query")
    search.add_argument("--corpus", required=True, type=INPUT_FILE, help="a text file, one sentence a line")
    search.add_argument("--query", nargs="+", required=True, type=TEXT, help="one or more query sentences")
    search.add_argument("--top-k", type=SIZE, default=5, help="neighbours per query (default: 5)")
    search.add_argument("--threshold", type=NUMBER, default=0.6,
                        help="least cosine similarity shown (default: 0.6)")
    for p in (enc, search):
        add_common_flags(p, model="required", data_dir=False)
        p.add_argument("--batch-size", type=SIZE, default=64, help="sentences per forward pass (default: 64)")
    args = parser.parse_args(argv)
    with command_errors():  # every input is checked before the model is loaded
        sentences = read_corpus(args.input if args.command == "encode" else args.corpus)
        model = SimCSE(args.model, pooler=args.pooler, precision=args.precision)
        if args.command == "encode":
            z = model.encode(sentences, args.batch_size, return_numpy=True)
            npy = io.BytesIO()  # np.save(name) would add ".npy" to a name without it
            np.save(npy, z)  # then written whole, or not at all: an old file stays as it was (files.py)
            write_files({args.output: npy.getbuffer()}, f" (an array of {z.nbytes / 2**20:.1f} MiB)")
            print(f"{len(sentences)} sentences -> {args.output} ({model.pooler} embeddings)")
        else:
            model.build_index(sentences, args.batch_size)
            for query, hits in zip(args.query, model.search(args.query, args.threshold, args.top_k)):
                print(f"{query}")
                for sentence, score in hits:
                    print(f"  {score:.4f}  {sentence}")
                if not hits:
                    print(f"  (nothing at cosine >= {args.threshold})")


if __name__ == "__main__":
    main()
