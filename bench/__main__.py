"""Benchmarks against the reference stack (transformers + the authors' SentEval loop). Prints times and
ratios.

    python -m bench eval     # full seven-task STS test evaluation: ours vs. the SentEval way
    python -m bench train    # SimCSE training steps: ours vs. transformers and sentence-transformers, fp32
                             # and bf16, and the step's matmul roofline
    python -m bench train --train-file nli/nli_small_for_simcse.csv   # supervised (triplets)
    python -m bench train --bert-base       # the paper's model shape (random weights), e.g. on a GPU
    python -m bench run --bert-base         # a timed unsup-bert-shaped run and the whole run's projected time
    python -m bench encode   # STS-B's 17,256 sentences: ours vs. sentence-transformers' encode
    python -m bench search   # SimCSE.search: 100 queries against 200,000 stored embeddings
    python -m bench index    # build_index of 200,000 sentences: peak memory, tokenised in chunks or at once
    python -m bench transfer # the seven transfer tasks: ours vs. the SentEval way (a reduced run of it)
"""
from formats.command_line import (COUNT, FOLDER, SIZE, TEXT, Distinct, Parser, checked, command_errors,
                                  quiet_start)
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import data
from bert import BertConfig, BertModel
from formats.checkpoint import default_model
from infra import cli
from infra.cli import add_common_flags
from simcse import POOLERS
from eval_sts import evaluate, format_table
from formats.senteval import BINARY_FILES, TRANSFER_TASKS
from bench.senteval_reference import senteval_style, senteval_transfer_style
from formats.tokenizer import load_tokenizer


def bench_eval(args):
    """The seven-task STS test evaluation: ours in fp32 and in bf16 (where the hardware has it) against the
    SentEval way, in one run; the bf16 row's drift is its largest difference from fp32."""
    import transformers
    from infra.speed import autocast_dtype, cpu_name
    name = args.model or default_model()
    device = torch.device("cpu")
    print(f"model {name}, pooler {args.pooler}, on {cpu_name()}")
    model, tokenizer = BertModel.from_pretrained(name), load_tokenizer(name)
    rows = {}
    for precision in ["fp32"] + (["bf16"] if autocast_dtype(device, "auto") else []):
        start = time.perf_counter()
        scores = evaluate(model, tokenizer, args.pooler, "test", data_dir=args.data_dir,
                          precision=precision)["scores"]
        rows[f"ours, {precision}"] = (time.perf_counter() - start, scores)
    start = time.perf_counter()
    reference = senteval_style(transformers.BertModel.from_pretrained(name).eval(),
                               transformers.AutoTokenizer.from_pretrained(name), args.pooler,
                               data_dir=args.data_dir)
    rows["SentEval way (transformers, fp32)"] = (time.perf_counter() - start, reference)
    ref_s = rows["SentEval way (transformers, fp32)"][0]
    fp32 = rows["ours, fp32"][1]
    for label, (seconds, scores) in rows.items():
        print(f"{label}: {seconds:.1f} s, {ref_s / seconds:.2f}x the SentEval way; largest difference "
              f"from ours in fp32 {max(abs(scores[k] - fp32[k]) for k in scores):.4f}")
        print(format_table(scores))


def bench_transfer(args):
    """The seven transfer tasks: ours (eval_transfer: each distinct sentence encoded once, the regressions
    trained together) against SentEval's way (its validation loops, one PyTorch regression at a time,
    SentEvalLogReg) on the same embeddings. The whole SentEval way takes over an hour on a 2-core CPU,
    so the reference runs the first --reference-folds of the ten outer folds of MR, CR, SUBJ and MPQA
    (41 of their 410 regressions a fold; compared with ours on the same folds) and all of SST2, TREC and
    MRPC; its time for the whole of a task is projected from the folds it ran."""
    import eval_transfer
    name = args.model or default_model()
    tasks = args.tasks or eval_transfer.TASKS
    if not set(args.reference_tasks or []) <= set(tasks):
        raise SystemExit(f"error: --reference-tasks must be some of the tasks ours runs: {' '.join(tasks)}")
    device = cli.device()
    print(f"model {name}, pooler {args.pooler}, on {device}, torch threads {torch.get_num_threads()}")
    model, tokenizer = BertModel.from_pretrained(name).to(device), load_tokenizer(name)
    start = time.perf_counter()
    loaded = eval_transfer.load_tasks(tasks, args.data_dir)
    inputs = eval_transfer.embed(model, tokenizer, args.pooler, loaded)
    encoded = time.perf_counter()
    ours, seconds = {}, {}
    for task in tasks:
        t0 = time.perf_counter()
        ours[task] = eval_transfer.classify(task, inputs[task], device)  # numbers back on the host: synced
        seconds[task] = time.perf_counter() - t0
    ours_s = time.perf_counter() - start
    scores = {task: ours[task]["acc"] for task in tasks}
    scores["Avg"] = sum(scores.values()) / len(tasks)
    print(f"ours (eval_transfer): {ours_s:.1f} s in all: encoding {encoded - start:.1f} s, the regressions "
          f"{sum(seconds.values()):.1f} s ({', '.join(f'{t} {s:.1f}' for t, s in seconds.items())})")
    print(format_table(scores))
    if "MRPC" in ours:
        print(f"MRPC F1 {ours['MRPC']['f1']:.2f}")

    folds = args.reference_folds
    print(f"\nSentEval way on the same embeddings (MR, CR, SUBJ, MPQA: the first {folds} of 10 outer folds), "
          "on one core: its operations are too small to gain from two, and lose much on a busy machine")
    torch.set_num_threads(1)
    print(f"{'task':6} {'ours':>7} {'SentEval':>9} {'diff':>6}  {'ours s':>7} {'SentEval s':>11}")
    ours_total, ref_total = 0.0, 0.0
    for task in args.reference_tasks or tasks:
        t0 = time.perf_counter()
        reference = senteval_transfer_style(task, {k: (X.numpy(), y) for k, (X, y) in inputs[task].items()},
                                            outer_folds=folds)
        ref_s = time.perf_counter() - t0
        mine, whole = ours[task]["acc"], ""
        if task in BINARY_FILES and folds < 10:  # ours on the folds the reference ran
            mine = round(float(np.mean(ours[task]["fold_acc"][:folds])), 2)
            ref_s, whole = ref_s * 10 / folds, " (projected)"
        extra = f"  F1 ours {ours[task]['f1']:.2f}, SentEval {reference['f1']:.2f}" if task == "MRPC" else ""
        print(f"{task:6} {mine:7.2f} {reference['acc']:9.2f} {mine - reference['acc']:6.2f}  "
              f"{seconds[task]:7.1f} {ref_s:11.1f}{whole}{extra}", flush=True)
        ours_total, ref_total = ours_total + seconds[task], ref_total + ref_s
    print(f"the regressions of these tasks: ours {ours_total:.1f} s, the SentEval way {ref_total:.1f} s "
          f"(projected to all folds): {ref_total / ours_total:.1f}x")


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, per GPU (NVIDIA data sheets)


def random_bert_base(folder):
    """BERT-base with random weights and the packaged (uncased WordPiece, same vocabulary) tokenizer: the
    paper's model shape, with nothing to download. Speed does not depend on the weights."""
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(folder)
    load_tokenizer(default_model()).save_pretrained(folder)
    return str(folder)


def model_name(args, folder):
    if args.bert_base and args.model:
        raise ValueError("--bert-base is a model of its own: give it or --model, not both")
    return random_bert_base(folder) if args.bert_base else args.model or default_model()


class PeakMemory:
    """The largest resident memory of this process while the block runs (sampled every 2 ms), in MiB; on a
    GPU the largest allocated GPU memory. On a CPU also `allocated`: the most bytes malloc had handed out and
    not had back (glibc's mallinfo2), the CPU's torch.cuda.max_memory_allocated. Resident memory also holds
    what was freed but that malloc keeps, in the middle of its heap, for later: the process's real size."""

    def __enter__(self):
        import threading
        self.peak, self.allocated, self.done = resident_mib(), allocated_mib(), threading.Event()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while not self.done.wait(0.002):
            self.peak, self.allocated = max(self.peak, resident_mib()), max(self.allocated, allocated_mib())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        if torch.cuda.is_available():
            self.peak = self.allocated = torch.cuda.max_memory_allocated() / 2**20


@functools.cache
def glibc_mallinfo2():
    """glibc's mallinfo2 (2.33+), callable from Python; None where malloc is not (that) glibc's."""
    import ctypes

    class Info(ctypes.Structure):  # struct mallinfo2
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = Info
    return mallinfo2


def allocated_mib():
    """What malloc has handed out and not had back, in MiB: its heaps' chunks in use plus its mmap'd ones
    (NaN where malloc is not glibc's)."""
    mallinfo2 = glibc_mallinfo2()
    if mallinfo2 is None:
        return float("nan")
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


PEERS = ("transformers-fp32", "transformers-bf16", "st-fp32", "st-bf16")
TRAIN_SIDES = PEERS + ("ours-fp32", "ours-bf16", "ours-fp32-micro", "ours-bf16-micro", "roofline-fp32",
                       "roofline-bf16")


def side_runs(what, sides, forwarded, rounds):
    """Each side in a process of its own (its peak memory its own), the sides alternated round by round (no
    side gets only the machine's better moments): {side: [the JSON its process printed last, ...]}."""
    import subprocess
    results = {side: [] for side in sides}
    for _ in range(rounds):
        for side in sides:
            run = subprocess.run([sys.executable, "-m", "bench", what, *forwarded, "--side", side],
                                 capture_output=True, text=True, cwd=data.REPO)
            if run.returncode:
                raise SystemExit(f"python -m bench {what} --side {side} failed:\n{run.stderr[-3000:]}")
            results[side].append(json.loads(run.stdout.strip().splitlines()[-1]))
    return results


def bench_train(args):
    """Time per SimCSE update on the same batches against the best configuration of each peer:
    transformers.BertModel with our loss, and sentence-transformers' MultipleNegativesRankingLoss (CLS
    pooling, scale 20 = 1 / temperature 0.05), each in fp32 and under bf16 autocast, with the Trainer's
    defaults (fused AdamW, gradients clipped at 1.0); ours as train.py runs it on this device, in fp32 and
    bf16. Every side tokenises inside the timed loop, as train.py does each step. The roofline sides time only
    the step's matrix products at its own shapes. On a GPU also the model FLOP utilisation: 6 x real tokens
    x matmul weights per update, over the GPU's dense bf16 peak. With --micro-batch K, also ours with gradient
    caching (gradcache.py): the same update K examples at a time, its time and peak memory."""
    import tempfile
    from infra.config import TrainConfig, check
    from infra.speed import cpu_has_bf16, cpu_name
    if args.side:
        return train_side(args)
    try:  # --micro-batch as train.py checks it
        check(TrainConfig(batch_size=args.batch_size, micro_batch=args.micro_batch))
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    cuda = torch.cuda.is_available()
    sides = [s for s in args.sides or TRAIN_SIDES if ("bf16" not in s or cuda or cpu_has_bf16())
             and (args.micro_batch or not s.endswith("micro"))]
    name = model_name(args, Path(tempfile.mkdtemp()))
    forwarded = [a for a in args.argv[1:] if a != "--bert-base"] + ([] if args.model else ["--model", name])
    results = side_runs("train", sides, forwarded, args.rounds)
    best = {side: min(r, key=lambda x: x["seconds"]) for side, r in results.items()}
    info = next(iter(best.values()))
    device = torch.cuda.get_device_name() if cuda else cpu_name()
    print(f"model {name} ({info['layers']} layers, {info['hidden']} wide), {info['views']} sentences x batch "
          f"{args.batch_size} from {args.train_file}, max length 32, tokenised in the timed loop, "
          f"{args.steps} timed steps after {args.warmup}, best of {args.rounds} rounds; "
          f"{info['tokens']:.0f} real tokens a step; on {device}")
    print(f"all rounds (ms/step): "
          f"{ {k: [round(1000 * x['seconds'], 1) for x in v] for k, v in results.items()} }")
    timed = [s for s in sides if not s.startswith("roofline")]
    peers = [s for s in sides if s in PEERS]
    fastest = min(peers or timed, key=lambda s: best[s]["seconds"])  # without peers: the fastest of ours
    reference = best[fastest]["seconds"]
    allocated = "allocated" if not cuda else ""  # a CPU's resident memory holds what malloc keeps freed too
    print(f"{'':20s} {'ms/step':>9s} {'examples/s':>11s} {'vs ' + fastest:>24s} {'peak memory':>12s} "
          f"{allocated:>12s}")
    for side in timed:
        r = best[side]
        label = f"{side} {args.micro_batch}" if side.endswith("micro") else side
        print(f"{label:20s} {1000 * r['seconds']:9.1f} {args.batch_size / r['seconds']:11.1f} "
              f"{reference / r['seconds']:23.2f}x {r['peak_mib']:8.0f} MiB" + (
                  f" {r['peak_allocated_mib']:8.0f} MiB" if allocated else "") + (
                  f"   {r['tflops']:.2f} TFLOP/s" + (f", MFU {r['mfu']:.1f}%" if r.get("mfu") else "")))
    for precision in ("fp32", "bf16"):
        if peers and f"ours-{precision}" in best and f"roofline-{precision}" in best:
            ours, roof = best[f"ours-{precision}"]["seconds"], best[f"roofline-{precision}"]["seconds"]
            print(f"ours {precision}: {reference / ours:.2f}x the fastest peer side ({fastest}); step within "
                  f"{ours / roof:.2f}x of its matmul roofline ({1000 * roof:.1f} ms of {precision} matrix "
                  f"products at its shapes, {best[f'roofline-{precision}']['tflops']:.2f} TFLOP/s)")
    for precision in ("fp32", "bf16"):  # gradient caching beside the plain step it replaces
        plain, micro = best.get(f"ours-{precision}"), best.get(f"ours-{precision}-micro")
        if plain and micro:
            slower = micro["seconds"] / plain["seconds"]
            print(f"ours {precision} --micro-batch {args.micro_batch}: {slower:.2f}x the plain step's time, "
                  f"{micro['peak_mib'] / plain['peak_mib']:.2f}x its peak memory" + (
                      f" ({micro['peak_allocated_mib'] / plain['peak_allocated_mib']:.2f}x allocated)"
                      if allocated else ""))


def train_side(args):
    """One side of `python -m bench train`, in this process: prints {"seconds": per step, ...} as JSON."""
    from formats.checkpoint import checkpoint_file, read_config
    from infra.config import TrainConfig
    from infra.distributed import Processes
    from simcse import contrastive_loss, embed_views
    import train
    device = cli.device()
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else lambda: None  # GPU work is asynchronous: wait before the clock
    _, examples, _ = data.read_training_file(args.train_file, args.data_dir)
    n_views = len(examples[0])
    order = data.batches(len(examples), args.batch_size, seed=0)
    texts = [[row[k] for k in range(n_views) for row in (examples[i] for i in next(order))]
             for _ in range(args.warmup + args.steps)]  # view by view, as train.py
    tokenizer = load_tokenizer(args.model)
    kind, precision = args.side.split("-")[:2]  # ours-bf16-micro: ours, bf16, gradient caching
    amp = torch.bfloat16 if precision == "bf16" else None
    c = read_config(BertConfig, checkpoint_file(args.model, "config.json"))
    tokens = sum(int(tokenizer(t, 32)["attention_mask"].sum()) for t in texts[args.warmup:]) / args.steps
    flops = 6 * tokens * c.num_hidden_layers * (4 * c.hidden_size ** 2
                                                + 2 * c.hidden_size * c.intermediate_size)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if cuda and k in torch.cuda.get_device_name()), None)
    result = {"tokens": tokens, "layers": c.num_hidden_layers, "hidden": c.hidden_size, "views": n_views}
    if kind == "roofline":
        shapes = [tokenizer(t, 32)["attention_mask"] for t in texts]
        seconds = matmul_roofline(c, shapes[args.warmup:], amp or torch.float32, device, sync)
        print(json.dumps({**result, "seconds": seconds, "peak_mib": 0.0, "tflops": flops / seconds / 1e12}))
        return
    if kind == "ours":  # train.py's own setup and update, on this device
        micro = args.micro_batch if args.side.endswith("micro") else None
        cfg = TrainConfig(model=args.model, micro_batch=micro, precision=precision, max_length=32, seed=0)
        parts = train.setup(cfg, BertModel.from_pretrained(args.model), tokenizer, args.model, Processes(),
                            total_steps=len(texts), compile=None if args.compile else False)
        step = lambda sentences, i: train.update(parts, cfg, sentences, n_views, i)
    elif kind == "transformers":  # transformers' BertModel under our loss, padded to the longest
        import transformers
        model = transformers.BertModel.from_pretrained(args.model).to(device)
        theirs = transformers.AutoTokenizer.from_pretrained(args.model)

        def step(sentences, i):
            batch = theirs(sentences, padding=True, truncation=True, max_length=32, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = contrastive_loss(embed_views(model, batch, n_views, "cls"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    else:  # sentence-transformers: MultipleNegativesRankingLoss over (anchor, positive[, negative]) columns
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
        encoder = Transformer(args.model, max_seq_length=32)
        model = SentenceTransformer(modules=[encoder, Pooling(c.hidden_size, "cls")], device=str(device))
        mnrl = MultipleNegativesRankingLoss(model, scale=20.0)  # cosine / 0.05, as our temperature
        n = len(texts[0]) // n_views

        def step(sentences, i):  # the collator tokenises each column; the Trainer's step
            columns = [model.preprocess(sentences[k * n:(k + 1) * n]) for k in range(n_views)]
            features = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in f.items()} for f in columns]
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = mnrl(features, None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    if kind != "ours":  # the HF Trainer's default optimizer (adamw_torch_fused since torch 2.8)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.0, fused=True)
        model.train()
    with PeakMemory() as memory:
        for i, sentences in enumerate(texts):
            if i == args.warmup:
                sync()
                start, before = time.perf_counter(), resident_mib()  # the model and AdamW's state made
            torch.manual_seed(i)  # the peers' masks (ours seeds each step itself, as in train.py)
            step(sentences, i + 1)
        sync()
        seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({**result, "seconds": seconds, "peak_mib": memory.peak, "before_mib": before,
                      "peak_allocated_mib": memory.allocated, "tflops": flops / seconds / 1e12,
                      "mfu": 100 * flops / seconds / peak if peak else None}))


def matmul_roofline(c, masks, dtype, device, sync, repeats=3):
    """Seconds per step of the step's matrix products alone, at its own shapes, on random `dtype` operands:
    the fastest a step can be while its products run as they do. For each (batch, length) attention mask:
    T = its real tokens (the packed step); per layer, forward: 4 (T x H) @ (H x H) (query, key, value,
    attention output), (T x H) @ (H x I), (T x I) @ (I x H), and attention's two batched products at
    (B, heads, L, d); backward: for each, the gradient of its input and of its other operand. Best of
    `repeats` passes over the steps, after one untimed pass (kernel creation)."""
    H, I, heads = c.hidden_size, c.intermediate_size, c.num_attention_heads
    operands = {}

    def operand(*shape):
        if shape not in operands:
            operands[shape] = torch.randn(shape, device=device).to(dtype)
        return operands[shape]

    def products(mask):
        (B, L), T, d = mask.shape, int(mask.sum()), H // heads
        forward = [(1, T, H, H)] * 4 + [(1, T, H, I), (1, T, I, H),
                                        (B * heads, L, d, L), (B * heads, L, L, d)]  # (batch, m, k, n)
        step = []
        for b, m, k, n in forward:  # (m x k) @ (k x n); its gradients (m x n) @ (n x k), (k x m) @ (m x n)
            step += [(b, m, k, n), (b, m, n, k), (b, k, m, n)]
        return [(operand(b, m, k), operand(b, k, n)) for b, m, k, n in step] * c.num_hidden_layers

    steps = [products(mask) for mask in masks]

    def run():
        for step in steps:
            for x, y in step:
                torch.bmm(x, y) if x.shape[0] > 1 else torch.mm(x[0], y[0])
        sync()

    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) / len(masks)


ENCODE_SIDES = ("ours-fp32", "ours-bf16", "st-fp32", "st-bf16")


def bench_encode(args):
    """Encoding the sentences of STS-B train, dev and test (mean pooling, batches of 64): ours
    (tool.encode, in fp32 and in bf16) against sentence-transformers' encode in fp32 and under bf16
    autocast, each side in a process of its own; and the largest difference of our fp32 embeddings from
    sentence-transformers' fp32 ones."""
    import tempfile
    from infra.speed import cpu_has_bf16, cpu_name
    if args.side:
        return encode_side(args)
    cuda = torch.cuda.is_available()
    sides = [s for s in ENCODE_SIDES if not s.endswith("bf16") or cuda or cpu_has_bf16()]
    name = args.model or default_model()
    folder = Path(tempfile.mkdtemp())
    forwarded = args.argv[1:] + ["--output", str(folder)] + ([] if args.model else ["--model", name])
    results = side_runs("encode", sides, forwarded, args.rounds)
    best = {side: min(r, key=lambda x: x["seconds"]) for side, r in results.items()}
    print(f"model {name}: the {best['ours-fp32']['sentences']:,} sentences of STS-B train/dev/test "
          f"({best['ours-fp32']['distinct']:,} distinct: ours encodes each once), mean pooling, batches of "
          f"64, best of {args.rounds} round(s); on "
          f"{torch.cuda.get_device_name() if cuda else cpu_name()}")
    peers = [s for s in sides if s.startswith("st")]
    fastest = min(peers, key=lambda s: best[s]["seconds"])
    for side, r in best.items():
        print(f"{side:10s} {r['seconds']:7.1f} s  {best[fastest]['seconds'] / r['seconds']:5.2f}x {fastest}  "
              f"{r['peak_mib']:6.0f} MiB")
    ours, theirs = (torch.load(folder / f"{side}.pt") for side in ("ours-fp32", "st-fp32"))
    print(f"largest difference of our fp32 embeddings from sentence-transformers' fp32: "
          f"{(ours - theirs).abs().max().item():.2e}")


def encode_side(args):
    import tool
    splits = data.load_sts("STSBenchmark", args.data_dir)
    sentences = [s for split in ("train", "dev", "test") for s in splits[split].sent1 + splits[split].sent2]
    kind, precision = args.side.split("-")
    device = cli.device()
    if kind == "ours":
        model, tokenizer = BertModel.from_pretrained(args.model).to(device), load_tokenizer(args.model)
        run = lambda: tool.encode(model, tokenizer, sentences, "avg", 64, precision=precision)
    else:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
        encoder = Transformer(args.model)
        model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")],
                                    device=str(device))

        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                return model.encode(sentences, batch_size=64, convert_to_tensor=True).float().cpu()
    with PeakMemory() as memory:
        start = time.perf_counter()
        z = run()
        seconds = time.perf_counter() - start
    torch.save(z, Path(args.output) / f"{args.side}.pt")
    print(json.dumps({"seconds": seconds, "peak_mib": memory.peak, "sentences": len(sentences),
                      "distinct": len(set(sentences))}))


def bench_run(args):
    """A timed train.py run shaped like the paper's (evaluation and saving every --eval-steps steps), and the
    projected time of the whole run: the step-0 evaluation, then one (eval-steps updates + evaluation and
    checkpoints) segment per --eval-steps of the paper's steps, at the fastest segment's pace after the first
    (which includes compiling)."""
    import tempfile
    from train import TrainConfig, train
    work = Path(tempfile.mkdtemp())
    name = model_name(args, work / "model")
    _, examples, _ = data.read_training_file(args.train_file, args.data_dir)
    supervised = len(examples[0]) == 3
    cfg = TrainConfig(model=name, train_file=args.train_file, output_dir=str(work / "run"),
                      batch_size=args.batch_size, max_steps=args.steps, eval_steps=args.eval_steps,
                      mlp_only_train=not supervised, lr=5e-5 if supervised else 3e-5, data_dir=args.data_dir)
    start = time.perf_counter()
    log = train(cfg, test=False)["log"]
    wall = time.perf_counter() - start
    segments = [b["seconds"] - a["seconds"] for a, b in zip(log, log[1:])]
    pace = min(segments[1:] or segments)
    paper_steps = 3 * (275_601 // 512) if supervised else 1_000_000 // 64  # sup-bert, unsup-bert
    projected = log[0]["seconds"] + pace * paper_steps / args.eval_steps
    print(f"{args.steps} steps of {args.batch_size} ({'supervised' if supervised else 'unsupervised'}), "
          f"evaluated every {args.eval_steps}: segments of {args.eval_steps} steps + evaluation took "
          f"{[round(s, 1) for s in segments]} s; step-0 evaluation {log[0]['seconds']:.1f} s; the whole call "
          f"{wall:.1f} s (loading and compiling included)")
    print(f"the paper's run ({paper_steps} steps, an evaluation every {args.eval_steps}): projected "
          f"{projected / 60:.1f} min at {pace / args.eval_steps * 1000:.1f} ms per step, evaluation included")


def bench_search(args):
    """Exact top-k search of real queries in an index of random unit vectors (the index's content does not
    change the work)."""
    from tool import SimCSE
    tool = SimCSE(args.model or default_model(), pooler="avg")
    dev = data.load_sts("STSBenchmark", args.data_dir)["dev"]
    queries = list(dict.fromkeys(dev.sent1))[:args.queries]
    generator = torch.Generator().manual_seed(0)
    dim = tool.model.config.hidden_size
    embeddings = torch.nn.functional.normalize(torch.randn(args.index_size, dim, generator=generator), dim=-1)
    tool.index = {"sentences": [f"sentence {i}" for i in range(args.index_size)],
                  "embeddings": embeddings.to(tool.device)}
    tool.search(queries[:2])  # warm-up
    start = time.perf_counter()
    z = tool.encode(queries, keepdim=True).to(tool.device)
    encoded = time.perf_counter()
    tool.nearest(z, args.top_k)
    found = time.perf_counter()
    results = tool.search(queries, threshold=0.0, top_k=args.top_k)
    total = time.perf_counter() - found
    assert len(results) == len(queries) and all(len(r) == args.top_k for r in results)
    print(f"{len(queries)} queries, index of {args.index_size:,} x {dim} "
          f"({embeddings.numel() * 4 / 2**20:.0f} MiB), "
          f"top {args.top_k}, {tool.device}, torch threads {torch.get_num_threads()}")
    print(f"encode the queries: {encoded - start:6.3f} s")
    print(f"exact top-k:        {found - encoded:6.3f} s")
    print(f"search (both):      {total:6.3f} s")


def bench_index(args):
    """SimCSE.build_index of a large corpus: peak memory and time when the sentences are tokenised a chunk at
    a time (tool.encode, as used) against all at once (as before), each in a process of its own. The
    model is a tiny random BERT with the packaged tokenizer: tokenising is what differs, and a small model
    keeps the encoding short."""
    import subprocess
    import tempfile
    if args.chunk:
        return index_side(args)
    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128)).save_pretrained(folder)
    load_tokenizer(default_model()).save_pretrained(folder)
    print(f"build_index of {args.index_size:,} distinct sentences (Wikipedia, numbered), a 2-layer 64-wide "
          f"random BERT, torch threads {torch.get_num_threads()}")
    for label, chunk in (("in chunks of 32,768", 32768), ("all at once", 10**9)):
        run = subprocess.run([sys.executable, "-m", "bench", "index", "--model", str(folder), "--index-size",
                              str(args.index_size), "--chunk", str(chunk)] + (["--data-dir", args.data_dir]
                                                                               if args.data_dir else []),
                             capture_output=True, text=True, cwd=data.REPO)
        if run.returncode:
            raise SystemExit(run.stderr[-3000:])
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{label:28s} peak memory {r['peak_mib']:7.0f} MiB "
              f"(+{r['peak_mib'] - r['before_mib']:.0f} MiB while indexing), {r['seconds']:.1f} s")


def index_side(args):
    from tool import SimCSE, encode
    wiki = [s for s, _ in data.read_training_file("wiki/wiki1m_head.txt", args.data_dir)[1]]
    corpus = [f"{wiki[i % len(wiki)]} ({i})" for i in range(args.index_size)]
    tool = SimCSE(args.model, pooler="avg")
    with PeakMemory() as memory:  # what build_index does: encode (with this chunk size), then unit vectors
        before = memory.peak
        start = time.perf_counter()
        z = encode(tool.model, tool.tokenizer, corpus, "avg", 256, 128, chunk=args.chunk)
        seconds = time.perf_counter() - start
    assert len(z) == args.index_size
    print(json.dumps({"peak_mib": memory.peak, "before_mib": before, "seconds": seconds}))


def main(argv=None):
    parser = Parser(prog="python -m bench", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)  # every value checked as it is read
    ev = sub.add_parser("eval", help="seven-task STS test evaluation, ours vs. the SentEval way")
    add_common_flags(ev, pooler=False, precision=False)  # --model, --data-dir
    ev.add_argument("--pooler", default="cls_before_pooler", choices=POOLERS)
    tr = sub.add_parser("train",
                        help="time per update, ours (as train.py on this device) vs. the peers' best")
    tr.add_argument("--batch-size", type=SIZE, default=64)
    tr.add_argument("--steps", type=SIZE, default=5, help="timed steps per round")
    tr.add_argument("--warmup", type=COUNT, default=2, help="untimed steps first (compiling happens there)")
    tr.add_argument("--rounds", type=SIZE, default=2)
    tr.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="on a GPU (default: on)")
    tr.add_argument("--micro-batch", type=SIZE, metavar="K",
                    help="also time ours with --micro-batch K (gradient caching): time and peak memory")
    tr.add_argument("--sides", nargs="+", choices=TRAIN_SIDES, metavar="SIDE",
                    help=f"only these sides (default: all): {', '.join(TRAIN_SIDES)}")
    tr.add_argument("--side", choices=TRAIN_SIDES, help=argparse.SUPPRESS)  # one side, in a child process
    ru = sub.add_parser("run", help="a timed train.py run and the projected time of the paper's whole run")
    ru.add_argument("--batch-size", type=SIZE, default=64,
                    help="64: unsup-bert; 512 with an NLI file: sup-bert")
    ru.add_argument("--steps", type=SIZE, default=375)
    ru.add_argument("--eval-steps", type=SIZE, default=125)
    for p in (tr, ru):
        add_common_flags(p, pooler=False, precision=False)  # --model, --data-dir
        p.add_argument("--bert-base", action="store_true", help="a random-init BERT-base instead of --model")
        p.add_argument("--train-file", default="wiki/wiki1m_head.txt", type=TEXT,
                       help="relative to the data folder")
    en = sub.add_parser("encode", help="encoding STS-B's sentences, ours vs. sentence-transformers' encode")
    add_common_flags(en, pooler=False, precision=False)  # --model, --data-dir
    en.add_argument("--rounds", type=SIZE, default=1)
    en.add_argument("--side", choices=ENCODE_SIDES, help=argparse.SUPPRESS)  # one side, in a child process
    en.add_argument("--output", type=FOLDER, help=argparse.SUPPRESS)  # where a side leaves its embeddings
    se = sub.add_parser("search", help="SimCSE.search: queries against a large index of stored embeddings")
    add_common_flags(se, pooler=False, precision=False)  # --model, --data-dir
    se.add_argument("--index-size", type=SIZE, default=200_000)
    se.add_argument("--queries", type=SIZE, default=100)
    se.add_argument("--top-k", type=SIZE, default=5)
    ix = sub.add_parser("index", help="SimCSE.build_index of 200,000 sentences: peak memory, chunked vs not")
    ix.add_argument("--index-size", type=SIZE, default=200_000)
    ix.add_argument("--model", type=TEXT, help=argparse.SUPPRESS)
    ix.add_argument("--data-dir", type=FOLDER)
    ix.add_argument("--chunk", type=SIZE, help=argparse.SUPPRESS)  # one side, in a child process
    tf = sub.add_parser("transfer",
                        help="the seven transfer tasks, ours vs. the SentEval way (a reduced run)")
    add_common_flags(tf, pooler=False, precision=False)  # --model, --data-dir
    tf.add_argument("--pooler", default="avg", choices=POOLERS)
    tf.add_argument("--tasks", nargs="+", choices=TRANSFER_TASKS, action=Distinct,
                    help="the tasks ours evaluates (default: all seven)")
    tf.add_argument("--reference-tasks", nargs="+", choices=TRANSFER_TASKS, action=Distinct,
                    help="the tasks the SentEval way runs (default: --tasks)")
    tf.add_argument("--reference-folds", type=checked(int, "an integer in [1, 10]", lambda v: 1 <= v <= 10),
                    default=1,
                    help="outer folds of MR, CR, SUBJ, MPQA the SentEval way runs (default: 1 of 10)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # what a side's process is given again
    commands = {"eval": bench_eval, "train": bench_train, "encode": bench_encode, "run": bench_run,
                "search": bench_search, "index": bench_index, "transfer": bench_transfer}
    with command_errors():
        commands[args.what](args)


if __name__ == "__main__":
    main()
