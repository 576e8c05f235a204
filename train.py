"""Train SimCSE: unsupervised (Wikipedia sentences, dropout as augmentation) or supervised (NLI triplets).

    python train.py                       # the `quick` preset: 100 unsupervised steps on CPU, all-MiniLM-L6-v2
    python train.py --preset quick-sup    # the same, supervised, on the NLI sample
    python train.py --preset unsup-bert   # the paper's unsupervised BERT-base run (GPU; data from the authors)
    python train.py --dropout 0.3 --max-steps 200 --output-dir runs/p03   # any preset value can be overridden
    python train.py --output-dir runs/p03 ... --resume                    # continue an interrupted run
    torchrun --nproc_per_node 4 train.py --preset sup-bert                # the same run on 4 GPUs

Every --eval-steps steps (and at step 0, before any update) the model is scored on STS-B dev; the best
checkpoint is kept in <output-dir>/best (Hugging Face and sentence-transformers layout), each evaluation is a
line of <output-dir>/log.jsonl, everything needed to resume is in <output-dir>/last, and at the end the best
checkpoint is evaluated on the seven STS test sets.
"""
import argparse
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

import data
from bert import BertModel, load_tokenizer, read_safetensors, write_safetensors
from eval_sts import default_model, dev_metrics, evaluate, format_table
from simcse import POOLERS, contrastive_loss, embed_views, embedding_pooler, reset_mlp, save_sentence_transformers


@dataclass
class TrainConfig:
    model: Optional[str] = None  # folder or hub id; None: the packaged all-MiniLM-L6-v2
    train_file: str = "wiki/wiki1m_head.txt"  # .txt: one sentence a line; .csv: sent0,sent1[,hard_neg]
    output_dir: str = "runs/quick"
    batch_size: int = 64  # the whole batch, over all processes
    lr: float = 3e-5
    epochs: float = 1.0
    max_steps: Optional[int] = None  # overrides epochs
    max_length: int = 32
    temp: float = 0.05
    pooler: str = "cls"
    mlp_only_train: bool = True  # the MLP over [CLS] in training only; cls_before_pooler to evaluate
    hard_negative_weight: float = 0.0
    dropout: float = 0.1  # hidden and attention dropout: the augmentation (Table 3)
    fixed_mask: bool = False  # both views share one dropout mask (Table 3, "Fixed 0.1")
    eval_steps: int = 125
    seed: int = 42
    data_dir: Optional[str] = None


# The authors' run_unsup_example.sh / run_sup_example.sh, and CPU-sized variants on the offline model.
PRESETS = {
    "quick": dict(train_file="wiki/wiki1m_head.txt", batch_size=64, lr=3e-5, max_steps=100, eval_steps=25,
                  output_dir="runs/quick"),
    "quick-sup": dict(train_file="nli/nli_small_for_simcse.csv", batch_size=64, lr=5e-5, max_steps=100,
                      eval_steps=25, mlp_only_train=False, output_dir="runs/quick-sup"),
    "unsup-bert": dict(model="bert-base-uncased", train_file="wiki/wiki1m_for_simcse.txt", batch_size=64, lr=3e-5,
                       epochs=1, eval_steps=125, output_dir="runs/unsup-bert"),
    "sup-bert": dict(model="bert-base-uncased", train_file="nli/nli_for_simcse.csv", batch_size=512, lr=5e-5,
                     epochs=3, eval_steps=125, mlp_only_train=False, output_dir="runs/sup-bert"),
}
NONFINITE_IN_A_ROW = 5  # this many skipped updates in a row stop the run


def eval_pooler(cfg):
    return embedding_pooler(cfg.pooler, cfg.mlp_only_train)


def global_batches(n, batch_size, seed, after_step=0):
    """The example indices of each step's batch from step after_step + 1 on: a new permutation every epoch,
    an incomplete last batch dropped. A function of the seed alone, so a resumed run and a run on any
    number of processes see the same batches."""
    generator = torch.Generator().manual_seed(seed)
    step = 0
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n - batch_size + 1, batch_size):
            step += 1
            if step > after_step:
                yield order[start:start + batch_size]


def dropout_seed(seed, rank, step):
    """The random seed of a step's dropout masks: fresh masks every step and on every process, and a function
    of (seed, process, step) alone, so that a resumed run draws the same masks as an uninterrupted one."""
    return hash((seed, rank, step))  # tuples of ints hash the same in every Python process


class GatherBatch(torch.autograd.Function):
    """The whole batch's embeddings (n_views, batch, d) from each process's share (n_views, share, d).

    In-batch negatives (eq. 1 and 5) are the other sentences of the *whole* batch, so every process needs
    every other's embeddings. Backward sums, over processes, the gradient with respect to each share and
    hands each process its own: with DistributedDataParallel averaging the parameter gradients, the update
    is that of one process holding the whole batch (tests/test_distributed.py checks it). The authors'
    cl_forward gathers without autograd and puts back only its own share: the gradient through the other
    processes' embeddings is lost, and the update is not the gradient of the loss it computes."""

    @staticmethod
    def forward(ctx, z):
        shares = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(shares, z.contiguous())
        return torch.cat(shares, dim=1)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's gradient with respect to every share, summed
        return grad.chunk(dist.get_world_size(), dim=1)[dist.get_rank()]


# --- Checkpoints: best/ for users, last/ to resume; each folder replaced whole --------------------

def replace_folder(folder: Path, write):
    """Call write(tmp) to fill a new folder beside `folder`, then swap it in, so that a crash at any moment
    leaves a complete folder: the old one, the new one, or the old one as <folder>.old (`recover`)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover(folder: Path):
    """Undo a swap that a crash cut between its two renames."""
    old = folder.with_name(folder.name + ".old")
    if old.exists() and not folder.exists():
        old.rename(folder)


def save_checkpoint(model, tokenizer, cfg, folder: Path):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_sentence_transformers(model, folder, eval_pooler(cfg), max_seq_length=128)
    (folder / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))


def experiment(cfg):
    return {k: v for k, v in asdict(cfg).items() if k != "data_dir"}  # what must match to resume


def save_state(folder, model, optimizer, schedule, scaler, state):
    write_safetensors(model.state_dict(), str(folder / "model.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict()}, folder / "optimizer.pt")
    (folder / "state.json").write_text(json.dumps(state, indent=1))


def load_state(out: Path, cfg, model, optimizer, schedule, scaler):
    recover(out / "last")
    recover(out / "best")
    if not (out / "last" / "state.json").exists():
        raise FileNotFoundError(f"{out}: nothing to resume (no last/state.json); run without --resume to start")
    state = json.loads((out / "last" / "state.json").read_text())
    saved, now = state["config"], experiment(cfg)
    changed = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if changed:
        raise ValueError(f"{out} was trained with another configuration; --resume needs the same ({'; '.join(changed)})")
    model.load_state_dict(read_safetensors(str(out / "last" / "model.safetensors")))
    saved = torch.load(out / "last" / "optimizer.pt", weights_only=True)  # tensors and numbers, no code
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    scaler.load_state_dict(saved["scaler"])
    return state


# --- Training ---------------------------------------------------------------------------------------

def update(step_model, model, optimizer, scaler, batch, n_views, cfg, amp_dtype=None, rank=0, world_size=1):
    """One SimCSE update from this process's share of the batch: the views, the contrastive loss over the
    whole batch, backward, gradient clipping at 1.0, AdamW. Returns (loss, skipped) as tensors on the device,
    without waiting for it: a non-finite loss or gradient skips the update (with fp16, the scaler decides)."""
    with torch.autocast(device_type=batch["input_ids"].device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        z = embed_views(step_model, batch, n_views, cfg.pooler, cfg.fixed_mask)
    share = z.shape[1]
    z = GatherBatch.apply(z) if world_size > 1 else z
    loss = contrastive_loss(z, cfg.temp, cfg.hard_negative_weight, anchors=slice(rank * share, (rank + 1) * share))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the same on every process
    skipped = ~torch.isfinite(grad_norm)  # a non-finite loss makes a non-finite gradient
    optimizer.found_inf = skipped.float()  # fused AdamW leaves the weights and its state as they were
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), skipped


def init_distributed():
    """(rank, number of processes, device). torchrun sets RANK and WORLD_SIZE: then one process per GPU
    (NCCL), or per CPU worker (gloo); plain `python train.py` is one process."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def train(cfg: TrainConfig, progress=True, test=True, resume=False, compile=None):
    """Run SimCSE training; returns {"log": [evaluation records], "best": record, "test": scores or None}
    (on the first process; the others return None)."""
    rank, world_size, device = init_distributed()
    master = rank == 0
    say = print if master else lambda *a, **k: None
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_path = data.training_file(cfg.train_file, cfg.data_dir, announce=master)
    examples, skipped = data.read_training_file(train_path)
    if cfg.batch_size % world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} does not divide among {world_size} processes")
    if len(examples) < cfg.batch_size:
        raise data.DataError(f"{train_path}: {len(examples)} examples, fewer than one batch of {cfg.batch_size}")
    n_views = len(examples[0])
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * (len(examples) // cfg.batch_size))
    share = cfg.batch_size // world_size  # this process's examples of each batch
    dev = data.load_sts("STSBenchmark", cfg.data_dir)["dev"]
    model_name = cfg.model or default_model()
    model, tokenizer = BertModel.from_pretrained(model_name), load_tokenizer(model_name)
    model.set_dropout(cfg.dropout)
    torch.manual_seed(cfg.seed)
    if cfg.pooler == "cls":
        reset_mlp(model)
    # On a GPU: fixed shapes (every batch padded to max_length, no packing) so the compiled step is reused.
    static = device.type == "cuda"
    model.pack_padding = not static
    model.to(device)

    # AdamW as the authors' (HF Trainer: no weight decay on SimCSE's runs), linear decay to 0, no warm-up.
    # Fused: one kernel, and it can skip an update on the device (found_inf) without waiting for the GPU.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total_steps)
    amp_dtype = None if device.type != "cuda" else torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)  # fp16 needs loss scaling, bf16 does not
    state = {"config": experiment(cfg), "step": 0, "best": None, "log": []}
    if resume:
        state = load_state(out, cfg, model, optimizer, schedule, scaler)
        say(f"resuming {out} after step {state['step']}")
    say(f"{len(examples)} examples from {train_path} ({skipped} blank skipped), {n_views} sentences each; "
        f"{total_steps} steps of {cfg.batch_size}{f' on {world_size} processes' if world_size > 1 else ''}; "
        f"model {model_name} on {device}; evaluating with {eval_pooler(cfg)}")

    step_model = torch.compile(model) if (compile if compile is not None else static) else model
    if world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(step_model, find_unused_parameters=cfg.pooler != "cls")
    last = state["log"][-1] if state["log"] else {}
    loss_sum, finite_steps = torch.zeros((), device=device), torch.zeros((), device=device)
    nonfinite = torch.tensor(float(last.get("nonfinite", 0)), device=device)  # skipped updates, all run
    in_a_row = torch.zeros((), device=device)  # skipped updates in a row
    start = time.perf_counter() - (last.get("seconds") or 0)
    log_file = None
    if master:  # a resumed run's log starts with the records up to the state it resumes from
        log_file = open(out / "log.jsonl", "w")
        log_file.writelines(json.dumps(record) + "\n" for record in state["log"])

    def evaluate_dev(step):
        """STS-B dev on the first process, which logs and saves the best checkpoint and the state to resume."""
        totals = torch.stack([loss_sum, finite_steps])
        if world_size > 1:
            dist.all_reduce(totals)
        if master:
            record = {"step": step, "loss": (totals[0] / totals[1]).item() if totals[1] > 0 else None,
                      "lr": schedule.get_last_lr()[0], **dev_metrics(model, tokenizer, dev, eval_pooler(cfg)),
                      "nonfinite": int(nonfinite.item()), "seconds": round(time.perf_counter() - start, 1)}
            if step == 0:  # what was trained on, as found (data.training_file may substitute or fetch)
                record.update(train_file=str(train_path), train_examples=len(examples))
            state["log"].append(record)
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            if state["best"] is None or record["stsb_dev"] > state["best"]["stsb_dev"]:  # never a NaN score
                state["best"] = record
                replace_folder(out / "best", lambda tmp: save_checkpoint(model, tokenizer, cfg, tmp))
            state["step"] = step
            replace_folder(out / "last", lambda tmp: save_state(tmp, model, optimizer, schedule, scaler, state))
        loss_sum.zero_()
        finite_steps.zero_()
        if world_size > 1:
            dist.barrier()  # the others wait for the evaluation

    if state["step"] == 0:
        evaluate_dev(0)
    batches = global_batches(len(examples), cfg.batch_size, cfg.seed, after_step=state["step"])
    bar = tqdm(range(state["step"] + 1, total_steps + 1), desc="train", disable=not (progress and master))
    check_every = 1 if device.type == "cpu" else 10  # reading a number off the GPU waits for it: not every step
    step_model.train()
    try:
        for step in bar:
            rows = next(batches)[rank * share:(rank + 1) * share]
            batch = tokenizer([examples[i][k] for k in range(n_views) for i in rows], cfg.max_length, static)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            torch.manual_seed(dropout_seed(cfg.seed, rank, step))
            loss, bad = update(step_model, model, optimizer, scaler, batch, n_views, cfg, amp_dtype, rank, world_size)
            schedule.step()
            loss_sum += torch.where(bad, 0.0, loss)
            finite_steps += ~bad
            nonfinite += bad
            in_a_row = (in_a_row + 1) * bad
            if step % check_every == 0 and in_a_row.item() >= NONFINITE_IN_A_ROW:
                best = state["best"] or {"step": "-", "stsb_dev": float("nan")}
                raise FloatingPointError(
                    f"{int(in_a_row.item())} non-finite losses or gradients in a row (last at step {step}); stopped. "
                    f"Lower --lr? The best checkpoint (step {best['step']}, STS-B dev {best['stsb_dev']:.2f}) is in "
                    f"{out / 'best'}, untouched.")
            if step % cfg.eval_steps == 0 or step == total_steps:
                evaluate_dev(step)
                if master:
                    bar.set_postfix(loss=f"{state['log'][-1]['loss'] or float('nan'):.3f}",
                                    dev=f"{state['log'][-1]['stsb_dev']:.2f}")
    except KeyboardInterrupt:
        bar.close()
        say(f"\ninterrupted; the best checkpoint so far is in {out / 'best'}; continue with the same command and "
            f"--resume (from step {state['step']})")
        return {"log": state["log"], "best": state["best"], "test": None} if master else None
    finally:
        if log_file:
            log_file.close()
    bar.close()
    if world_size > 1:
        dist.destroy_process_group()
    if not master:
        return None

    log, best = state["log"], state["best"]
    say(f"best STS-B dev {best['stsb_dev']:.2f} at step {best['step']} (step 0: {log[0]['stsb_dev']:.2f}); "
        f"checkpoint in {out / 'best'}")
    test_scores = None
    if test:
        best_model = BertModel.from_pretrained(str(out / "best")).to(device)
        results = evaluate(best_model, tokenizer, eval_pooler(cfg), "test", data_dir=cfg.data_dir, progress=progress)
        test_scores = results["scores"]
        (out / "test_scores.json").write_text(json.dumps(results, indent=2))
        say(f"------ test | {out / 'best'} | pooler {eval_pooler(cfg)} ------")
        say(format_table(test_scores))
    return {"log": log, "best": best, "test": test_scores}


def parse_args(argv=None):
    """(TrainConfig, run options: test, resume, compile, progress)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick", choices=PRESETS, help="starting values (default: quick)")
    flag = lambda name, **kw: parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **kw)
    flag("model", help="checkpoint folder or Hugging Face hub id (default: the packaged all-MiniLM-L6-v2)")
    flag("train_file", help="one sentence a line (.txt, unsupervised) or sent0,sent1[,hard_neg] (.csv, "
                            "supervised); a path, or relative to the data folder")
    flag("output_dir", help="where best/, last/ and log.jsonl go")
    flag("max_steps", type=int, help="number of updates (overrides --epochs)")
    flag("epochs", type=float, help="passes over the training file")
    flag("eval_steps", type=int, help="evaluate on STS-B dev (and save the state to resume) every N steps")
    flag("batch_size", type=int, help="examples per batch, over all processes (each gives 2 or 3 sentences)")
    flag("lr", type=float, help="peak learning rate (AdamW, linear decay to 0, no warm-up)")
    flag("max_length", type=int, help="tokens per sentence in training")
    flag("temp", type=float, help="temperature tau of the contrastive loss")
    flag("pooler", choices=POOLERS, help="training pooler; cls trains an MLP over [CLS]")
    flag("mlp_only_train", action=argparse.BooleanOptionalAction, help="use the MLP in training only")
    flag("hard_negative_weight", type=float, help="log-space weight of each anchor's own hard negative")
    flag("dropout", type=float, help="hidden and attention dropout probability p")
    flag("fixed_mask", action="store_true", help="share one dropout mask between the two views")
    flag("seed", type=int, help="random seed")
    flag("data_dir", help=f"data folder (default: ${data.DATA_DIR_ENV}, ./data or ../shared/data)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir where it stopped")
    parser.add_argument("--no-test", dest="test", action="store_false", help="skip the final seven-task test evaluation")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model for training (default: on a GPU only)")
    args = vars(parser.parse_args(argv))
    options = {k: args.pop(k) for k in ("test", "resume", "compile")}
    values = {**PRESETS[args.pop("preset")], **{k: v for k, v in args.items() if v is not None}}
    return TrainConfig(**{k: v for k, v in values.items() if k in {f.name for f in fields(TrainConfig)}}), options


def main():
    cfg, options = parse_args()
    try:
        train(cfg, **options)
    except (OSError, ValueError, KeyError, FloatingPointError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
