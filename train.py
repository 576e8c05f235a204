"""Train SimCSE: unsupervised (Wikipedia sentences, dropout as augmentation) or supervised (NLI triplets).

    python train.py                       # the `quick` preset: 100 unsupervised steps on CPU, all-MiniLM-L6-v2
    python train.py --preset quick-sup    # the same, supervised, on the NLI sample
    python train.py --preset unsup-bert   # the paper's unsupervised BERT-base run (GPU; data from the authors)
    python train.py --dropout 0.3 --max-steps 200 --output-dir runs/p03   # any preset value can be overridden

Every --eval-steps steps (and at step 0, before any update) the model is scored on STS-B dev; the best
checkpoint is kept in --output-dir in the Hugging Face layout (eval_sts.py and transformers both load it),
each evaluation is a line of <output-dir>/log.jsonl, and at the end the best checkpoint is evaluated on the
seven STS test sets.
"""
import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from tqdm.auto import tqdm

import data
from bert import BertModel, load_tokenizer
from eval_sts import default_model, evaluate, format_table
from simcse import POOLERS, alignment, contrastive_loss, embed_views, encode, reset_mlp, uniformity


@dataclass
class TrainConfig:
    model: Optional[str] = None  # folder or hub id; None: the packaged all-MiniLM-L6-v2
    train_file: str = "wiki/wiki1m_head.txt"  # .txt: one sentence a line; .csv: sent0,sent1[,hard_neg]
    output_dir: str = "runs/quick"
    batch_size: int = 64
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


def eval_pooler(cfg):
    return "cls_before_pooler" if cfg.pooler == "cls" and cfg.mlp_only_train else cfg.pooler


def dev_metrics(model, tokenizer, dev: data.STSPairs, pooler):
    """STS-B dev Spearman x100, and alignment (pairs with gold score > 4) / uniformity (all sentences)."""
    sentences = list(dict.fromkeys(dev.sent1 + dev.sent2))
    z = F.normalize(encode(model, tokenizer, sentences, pooler), dim=-1)
    index = {s: i for i, s in enumerate(sentences)}
    a, b = z[[index[s] for s in dev.sent1]], z[[index[s] for s in dev.sent2]]
    positive = torch.tensor(dev.scores) > 4
    return {"stsb_dev": 100 * spearmanr((a * b).sum(-1).numpy(), dev.scores)[0],
            "align": alignment(a[positive], b[positive]), "uniform": uniformity(z)}


def shuffled_batches(n, batch_size, seed):
    """Index lists of batch_size examples, reshuffled every epoch, forever."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]


def save_checkpoint(model, tokenizer, cfg, out: Path):
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))


def train(cfg: TrainConfig, progress=True, test=True):
    """Run SimCSE training; returns {"log": [evaluation records], "best": record, "test": scores or None}."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_path = Path(cfg.train_file)
    if not train_path.exists():
        train_path = data.data_dir(cfg.data_dir) / cfg.train_file
    examples, skipped = data.read_training_file(train_path)
    if not examples:
        raise data.DataError(f"{train_path}: no training examples")
    n_views = len(examples[0])
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * math.ceil(len(examples) / cfg.batch_size))
    dev = data.load_sts("STSBenchmark", cfg.data_dir)["dev"]
    model_name = cfg.model or default_model()
    model, tokenizer = BertModel.from_pretrained(model_name), load_tokenizer(model_name)
    model.set_dropout(cfg.dropout)
    if cfg.pooler == "cls":
        reset_mlp(model)
    model.to(device)
    print(f"{len(examples)} examples from {train_path} ({skipped} blank skipped), {n_views} sentences each; "
          f"{total_steps} steps of {cfg.batch_size}; model {model_name} on {device}; evaluating with {eval_pooler(cfg)}")

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total_steps)  # linear to 0
    use_amp = device == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(enabled=use_amp and amp_dtype == torch.float16)

    log, best, losses, start = [], None, [], time.perf_counter()
    log_file = open(out / "log.jsonl", "w")

    def evaluate_dev(step):
        nonlocal best
        record = {"step": step, "loss": sum(losses) / len(losses) if losses else None,
                  "lr": schedule.get_last_lr()[0], **dev_metrics(model, tokenizer, dev, eval_pooler(cfg)),
                  "seconds": round(time.perf_counter() - start, 1)}
        losses.clear()
        log.append(record)
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        if best is None or record["stsb_dev"] > best["stsb_dev"]:
            best = record
            save_checkpoint(model, tokenizer, cfg, out)
        return record

    record = evaluate_dev(0)
    batches = shuffled_batches(len(examples), cfg.batch_size, cfg.seed)
    bar = tqdm(range(1, total_steps + 1), desc="train", disable=not progress)
    model.train()
    try:
        for step in bar:
            rows = [examples[i] for i in next(batches)]
            batch = tokenizer([row[k] for k in range(n_views) for row in rows], max_length=cfg.max_length)
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device_type=device, dtype=amp_dtype, enabled=use_amp):
                z = embed_views(model, batch, n_views, cfg.pooler, cfg.fixed_mask)
            loss = contrastive_loss(z, cfg.temp, cfg.hard_negative_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            losses.append(loss.item())
            if step % cfg.eval_steps == 0 or step == total_steps:
                record = evaluate_dev(step)
            bar.set_postfix(loss=f"{loss.item():.3f}", dev=f"{record['stsb_dev']:.2f}")
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; the best checkpoint so far (step {best['step']}, STS-B dev {best['stsb_dev']:.2f}) "
              f"is in {out}, the log in {out / 'log.jsonl'}")
        return {"log": log, "best": best, "test": None}
    finally:
        log_file.close()
    bar.close()

    print(f"best STS-B dev {best['stsb_dev']:.2f} at step {best['step']} (step 0: {log[0]['stsb_dev']:.2f}); "
          f"checkpoint in {out}")
    test_scores = None
    if test:
        best_model = BertModel.from_pretrained(str(out)).to(device)
        results = evaluate(best_model, tokenizer, eval_pooler(cfg), "test", data_dir=cfg.data_dir, progress=progress)
        test_scores = results["scores"]
        (out / "test_scores.json").write_text(json.dumps(results, indent=2))
        print(f"------ test | {out} | pooler {eval_pooler(cfg)} ------")
        print(format_table(test_scores))
    return {"log": log, "best": best, "test": test_scores}


def parse_config(argv=None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick", choices=PRESETS, help="starting values (default: quick)")
    flag = lambda name, **kw: parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **kw)
    flag("model", help="checkpoint folder or Hugging Face hub id (default: the packaged all-MiniLM-L6-v2)")
    flag("train_file", help="one sentence a line (.txt, unsupervised) or sent0,sent1[,hard_neg] (.csv, "
                            "supervised); a path, or relative to the data folder")
    flag("output_dir", help="where the best checkpoint and log.jsonl go")
    flag("max_steps", type=int, help="number of updates (overrides --epochs)")
    flag("epochs", type=float, help="passes over the training file")
    flag("eval_steps", type=int, help="evaluate on STS-B dev every N steps")
    flag("batch_size", type=int, help="examples per batch (each gives 2 or 3 sentences)")
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
    args = vars(parser.parse_args(argv))
    values = {**PRESETS[args.pop("preset")], **{k: v for k, v in args.items() if v is not None}}
    return TrainConfig(**{k: v for k, v in values.items() if k in {f.name for f in fields(TrainConfig)}})


def main():
    cfg = parse_config()
    try:
        train(cfg)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
