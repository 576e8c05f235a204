"""Benchmarks against the reference stack (transformers + the authors' SentEval loop). Prints times and ratios.

    python bench.py eval     # full seven-task STS test evaluation: ours vs. the SentEval way
    python bench.py train    # SimCSE training steps: our BERT vs. transformers.BertModel
    python bench.py train --train-file nli/nli_small_for_simcse.csv   # supervised (triplets)
    python bench.py search   # SimCSE.search: 100 queries against 200,000 stored embeddings
"""
import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

import data
from bert import BertModel, load_tokenizer
from eval_sts import default_model, evaluate, format_table


def senteval_style(model, tokenizer, pooler, tasks=data.STS_TASKS, mode="test", data_dir=None, batch_size=128):
    """The authors' evaluation rebuilt for comparison: SentEval's STS loop around evaluation.py's batcher.

    `model` is a transformers.BertModel and `tokenizer` its tokenizer. Task by task and subset by subset,
    batches of 128 pairs -- STS12-16 sorted by the word counts of the first, then the second sentence, then
    the score; STS-B and SICK-R in file order, all three splits -- each side padded and encoded on its own,
    then a cosine per pair in numpy. Returns the headline numbers, like `evaluate(...)["scores"]`.
    """
    def batcher(words):
        batch = tokenizer([" ".join(w) for w in words], padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True, return_dict=True)
        mask = batch["attention_mask"].unsqueeze(-1)
        hidden = out.hidden_states
        if pooler == "cls":
            return out.pooler_output
        if pooler == "cls_before_pooler":
            return out.last_hidden_state[:, 0]
        tokens = {"avg": hidden[-1], "avg_top2": (hidden[-1] + hidden[-2]) / 2.0,
                  "avg_first_last": (hidden[1] + hidden[-1]) / 2.0}[pooler]
        return (tokens * mask).sum(1) / mask.sum(-1).unsqueeze(-1)

    def cosine(u, v):
        u, v = np.nan_to_num(u.numpy()), np.nan_to_num(v.numpy())
        return np.nan_to_num(np.dot(u, v) / (np.sqrt(np.dot(u, u)) * np.sqrt(np.dot(v, v))))

    scores = {}
    for task in tasks:
        all_sys, all_gold, per_split = [], [], {}
        for subset, pairs in data.load_sts(task, data_dir).items():
            words = list(zip([s.split() for s in pairs.sent1], [s.split() for s in pairs.sent2], pairs.scores))
            if task in data.STS_YEARS:
                words.sort(key=lambda z: (len(z[0]), len(z[1]), z[2]))
            sys_scores = []
            for i in range(0, len(words), batch_size):
                chunk = words[i:i + batch_size]
                enc1, enc2 = batcher([z[0] for z in chunk]), batcher([z[1] for z in chunk])
                sys_scores += [cosine(enc1[k], enc2[k]) for k in range(len(chunk))]
            gold = [z[2] for z in words]
            per_split[subset] = 100 * spearmanr(sys_scores, gold)[0]
            all_sys += sys_scores
            all_gold += gold
        if task in data.STS_YEARS:
            scores[task] = 100 * spearmanr(all_sys, all_gold)[0]
        else:
            scores[task] = per_split["dev" if mode == "dev" else "test"]
    if mode == "test" and len(tasks) == len(data.STS_TASKS):
        scores["Avg"] = sum(float(f"{scores[t]:.2f}") for t in tasks) / len(tasks)
    return scores


def bench_eval(args):
    import transformers
    name = args.model or default_model()
    print(f"model {name}, pooler {args.pooler}, torch threads {torch.get_num_threads()}")

    start = time.perf_counter()
    ours = evaluate(BertModel.from_pretrained(name), load_tokenizer(name), args.pooler, "test", data_dir=args.data_dir)
    ours_s = time.perf_counter() - start
    print(f"ours (eval_sts.evaluate):             {ours_s:7.1f} s")
    print(format_table(ours["scores"]))

    start = time.perf_counter()
    reference = senteval_style(transformers.BertModel.from_pretrained(name).eval(),
                               transformers.AutoTokenizer.from_pretrained(name), args.pooler, data_dir=args.data_dir)
    ref_s = time.perf_counter() - start
    print(f"SentEval way (transformers.BertModel): {ref_s:7.1f} s")
    print(format_table(reference))
    diff = max(abs(ours["scores"][k] - reference[k]) for k in reference)
    print(f"speed-up {ref_s / ours_s:.2f}x; largest score difference {diff:.4f}")


def bench_train(args):
    """Examples/s of SimCSE training steps (views, loss, backward, AdamW) on the same batches."""
    import transformers
    from simcse import contrastive_loss, embed_views
    from train import global_batches
    name = args.model or default_model()
    examples, _ = data.read_training_file(data.data_dir(args.data_dir) / args.train_file)
    n_views = len(examples[0])
    tokenizer = load_tokenizer(name)
    order = global_batches(len(examples), args.batch_size, seed=0)
    batches = [tokenizer([row[k] for k in range(n_views) for row in (examples[i] for i in next(order))],
                         max_length=32) for _ in range(args.steps + 2)]

    def run(model):
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
        torch.manual_seed(0)
        for i, batch in enumerate(batches):
            if i == 2:  # two warm-up steps
                start = time.perf_counter()
            loss = contrastive_loss(embed_views(model, batch, n_views, "cls"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return args.steps * args.batch_size / (time.perf_counter() - start)

    models = {"ours": BertModel.from_pretrained(name), "transformers": transformers.BertModel.from_pretrained(name)}
    rates = {k: [] for k in models}
    for _ in range(args.rounds):  # alternate, so that neither gets the machine's better moments only
        for key, model in models.items():
            rates[key].append(run(model))  # the same step: embed_views only calls model(...)
    ours, theirs = max(rates["ours"]), max(rates["transformers"])
    print(f"model {name}, {n_views} sentences x batch {args.batch_size} from {args.train_file}, max length 32, "
          f"{args.steps} timed steps, best of {args.rounds} rounds, torch threads {torch.get_num_threads()}")
    print(f"all rounds (examples/s): {rates}")
    print(f"ours:                   {ours:7.1f} examples/s")
    print(f"transformers.BertModel: {theirs:7.1f} examples/s")
    print(f"ratio ours/transformers {ours / theirs:.2f}x")


def bench_search(args):
    """Exact top-k search of real queries in an index of random unit vectors (the index's content does not
    change the work)."""
    from simcse import SimCSE
    tool = SimCSE(args.model or default_model(), pooler="avg")
    dev = data.load_sts("STSBenchmark", args.data_dir)["dev"]
    queries = list(dict.fromkeys(dev.sent1))[:args.queries]
    generator = torch.Generator().manual_seed(0)
    dim = tool.model.config.hidden_size
    embeddings = torch.nn.functional.normalize(torch.randn(args.index_size, dim, generator=generator), dim=-1)
    tool.index = {"sentences": [f"sentence {i}" for i in range(args.index_size)], "embeddings": embeddings.to(tool.device)}
    tool.search(queries[:2])  # warm-up
    start = time.perf_counter()
    z = tool.encode(queries, keepdim=True).to(tool.device)
    encoded = time.perf_counter()
    tool.nearest(z, args.top_k)
    found = time.perf_counter()
    results = tool.search(queries, threshold=0.0, top_k=args.top_k)
    total = time.perf_counter() - found
    assert len(results) == len(queries) and all(len(r) == args.top_k for r in results)
    print(f"{len(queries)} queries, index of {args.index_size:,} x {dim} ({embeddings.numel() * 4 / 2**20:.0f} MiB), "
          f"top {args.top_k}, {tool.device}, torch threads {torch.get_num_threads()}")
    print(f"encode the queries: {encoded - start:6.3f} s")
    print(f"exact top-k:        {found - encoded:6.3f} s")
    print(f"search (both):      {total:6.3f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    ev = sub.add_parser("eval", help="seven-task STS test evaluation, ours vs. the SentEval way")
    ev.add_argument("--model", help="checkpoint folder or hub id (default: the packaged all-MiniLM-L6-v2)")
    ev.add_argument("--pooler", default="cls_before_pooler")
    ev.add_argument("--data-dir")
    tr = sub.add_parser("train", help="training throughput, ours vs. transformers.BertModel")
    tr.add_argument("--model", help="checkpoint folder or hub id (default: the packaged all-MiniLM-L6-v2)")
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--steps", type=int, default=5, help="timed steps per round (after 2 warm-up steps)")
    tr.add_argument("--rounds", type=int, default=2)
    tr.add_argument("--train-file", default="wiki/wiki1m_head.txt", help="relative to the data folder")
    tr.add_argument("--data-dir")
    se = sub.add_parser("search", help="SimCSE.search: queries against a large index of stored embeddings")
    se.add_argument("--model", help="checkpoint folder or hub id (default: the packaged all-MiniLM-L6-v2)")
    se.add_argument("--index-size", type=int, default=200_000)
    se.add_argument("--queries", type=int, default=100)
    se.add_argument("--top-k", type=int, default=5)
    se.add_argument("--data-dir")
    args = parser.parse_args()
    {"eval": bench_eval, "train": bench_train, "search": bench_search}[args.what](args)


if __name__ == "__main__":
    main()
