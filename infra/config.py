"""A training run's settings: TrainConfig, the presets (the authors' runs and CPU-sized ones), the command
line of train.py, and the checks that every value passes before a run does any work."""
import argparse
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

from bert import dropout_layers
from extras import augment
from formats.checkpoint import check_model
from formats.command_line import Parser, file_problem, folder_problem, output_problem
from infra.cli import add_common_flags
from formats.files import DataError
from simcse import POOLERS, SIMILARITIES, embedding_pooler
from infra.speed import PRECISIONS


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
    dropout: float = 0.1  # every dropout of BERT: the augmentation (Table 3); bert.BertModel.set_dropout
    hidden_dropout: Optional[float] = None  # each kind its own p (None: --dropout's): the residual branches,
    attention_dropout: Optional[float] = None  # the attention probabilities,
    embedding_dropout: Optional[float] = None  # the embeddings' output
    dropout_layers: str = "all"  # the encoder layers that drop: all, top:K or bottom:K
    view_dropout: Optional[list] = None  # [P1, P2]: --dropout of the first view and of the others
    fixed_mask: bool = False  # both views share one dropout mask (Table 3, "Fixed 0.1")
    do_mlm: bool = False  # add the auxiliary masked-language-modelling loss (mlm.py; the authors' --do_mlm)
    mlm_weight: float = 0.1  # its weight lambda, the authors' default
    micro_batch: Optional[int] = None  # the update computed this many examples at a time (gradcache.py)
    augment: Optional[str] = None  # a text augmentation of the views (Table 1, augment.py), e.g. "crop:0.1"
    augment_views: int = 2  # how many views it augments: 2, each its own draw; 1, the second view only
    similarity: str = "cos"  # sim() of eq. 1: cosine, or "dot", the dot product (Table D.1)
    eval_steps: int = 125
    dev_file: Optional[str] = None  # scored sentence pairs to select the model on (None: STS-B dev)
    seed: int = 42
    precision: str = "auto"  # bf16 autocast where the hardware multiplies bf16 fast (speed.py), else fp32
    data_dir: Optional[str] = None

    def dropout_of(self, view=0):
        """bert's set_dropout arguments of view 0 (the first) or 1 (the others): its p with --view-dropout."""
        p = self.view_dropout[view] if self.view_dropout else self.dropout
        return dict(p=p, hidden=self.hidden_dropout, attention=self.attention_dropout,
                    embedding=self.embedding_dropout, layers=self.dropout_layers)

    def views_dropout(self):  # simcse.embed_views' view_dropout: None (one pass) unless the views' p differ
        v = self.view_dropout
        return [self.dropout_of(0), self.dropout_of(1)] if v and v[0] != v[1] else None

    @property
    def dev_key(self):  # the log's name of the score that selects the model
        return "stsb_dev" if self.dev_file is None else "dev"

    @property
    def embedding(self):  # the embedding the run trains for and is evaluated with (section 3)
        return embedding_pooler(self.pooler, self.mlp_only_train)


# The authors' run_unsup_example.sh / run_sup_example.sh, and CPU-sized variants on the offline model.
PRESETS = {
    "quick": dict(train_file="wiki/wiki1m_head.txt", batch_size=64, lr=3e-5, max_steps=100, eval_steps=25,
                  output_dir="runs/quick"),
    "quick-sup": dict(train_file="nli/nli_small_for_simcse.csv", batch_size=64, lr=5e-5, max_steps=100,
                      eval_steps=25, mlp_only_train=False, output_dir="runs/quick-sup"),
    "unsup-bert": dict(model="bert-base-uncased", train_file="wiki/wiki1m_for_simcse.txt", batch_size=64,
                       lr=3e-5, epochs=1, eval_steps=125, output_dir="runs/unsup-bert"),
    "sup-bert": dict(model="bert-base-uncased", train_file="nli/nli_for_simcse.csv", batch_size=512, lr=5e-5,
                     epochs=3, eval_steps=125, mlp_only_train=False, output_dir="runs/sup-bert"),
    # RoBERTa-base, the authors' README table (and the paper's Appendix A): unsupervised batch 512, lr 1e-5;
    # supervised as BERT (batch 512, lr 5e-5 for base models). The rest as their scripts for BERT.
    "unsup-roberta": dict(model="roberta-base", train_file="wiki/wiki1m_for_simcse.txt", batch_size=512,
                          lr=1e-5, epochs=1, eval_steps=125, output_dir="runs/unsup-roberta"),
    "sup-roberta": dict(model="roberta-base", train_file="nli/nli_for_simcse.csv", batch_size=512, lr=5e-5,
                        epochs=3, eval_steps=125, mlp_only_train=False, output_dir="runs/sup-roberta"),
}


def check(cfg: TrainConfig):
    """Every value in range and the model found, before anything is read, computed or written."""
    micro = cfg.micro_batch
    problems = [
        ("--batch-size", cfg.batch_size >= 2, "an integer of at least 2 (in-batch negatives need others)"),
        ("--lr", math.isfinite(cfg.lr) and cfg.lr > 0, "a positive number"),
        ("--epochs", 0 < cfg.epochs <= 1e6, "a positive number of at most 1e6"),  # (a finite step count)
        ("--max-steps", cfg.max_steps is None or 1 <= cfg.max_steps < 2**63, "an integer in [1, 2**63)"),
        ("--max-length", cfg.max_length >= 2, "an integer of at least 2 ([CLS] and [SEP])"),
        ("--temp", math.isfinite(cfg.temp) and cfg.temp > 0, "a positive number"),
        ("--dropout", 0 <= cfg.dropout < 1, "a probability in [0, 1)"),
        *((flag, p is None or 0 <= p < 1, "a probability in [0, 1)") for flag, p in (
            ("--hidden-dropout", cfg.hidden_dropout), ("--attention-dropout", cfg.attention_dropout),
            ("--embedding-dropout", cfg.embedding_dropout))),
        ("--dropout-layers", re.fullmatch(r"all|(top|bottom):[1-9][0-9]*", cfg.dropout_layers),
         "all, top:K or bottom:K (K >= 1)"),
        ("--view-dropout", cfg.view_dropout is None or len(cfg.view_dropout) == 2
         and all(0 <= p < 1 for p in cfg.view_dropout), "two probabilities in [0, 1)"),
        ("--eval-steps", cfg.eval_steps >= 1, "an integer of at least 1"),
        ("--hard-negative-weight", math.isfinite(cfg.hard_negative_weight), "a finite number"),
        ("--pooler", cfg.pooler in POOLERS, f"one of {', '.join(POOLERS)}"),
        ("--precision", cfg.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        ("--mlm-weight", math.isfinite(cfg.mlm_weight) and cfg.mlm_weight >= 0, "a number of at least 0"),
        ("--micro-batch", micro is None or 1 <= micro and cfg.batch_size % micro == 0,
         f"an integer of at least 1 that divides --batch-size {cfg.batch_size}"),
        ("--augment-views", cfg.augment_views in (1, 2), "1 (the second view) or 2 (both)"),
        ("--similarity", cfg.similarity in SIMILARITIES, f"one of {', '.join(SIMILARITIES)}"),
        ("--seed", 0 <= cfg.seed < 2**63, "an integer in [0, 2**63)"),  # torch.manual_seed's range
    ]
    for flag, ok, expected in problems:
        if not ok:
            value = getattr(cfg, flag[2:].replace("-", "_"))
            value = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            raise ValueError(f"{flag} {value}: expected {expected}")
    for name, value in asdict(cfg).items():  # every integer one torch can hold (int64)
        if type(value) is int and not -2**63 <= value < 2**63:
            raise ValueError(f"--{name.replace('_', '-')} {value}: expected an integer below 2**63")
    text = lambda value, what: None if str(value).strip() else f"an empty {what}"
    for flag, value, problem in (  # the paths: of the right kind (a folder is made, in a writable folder)
            ("--output-dir", cfg.output_dir, output_problem(cfg.output_dir, folder=True)),
            ("--train-file", cfg.train_file, text(cfg.train_file, "path")),  # (or in the data folder)
            ("--model", cfg.model, cfg.model is not None and text(cfg.model, "name")),
            ("--data-dir", cfg.data_dir, cfg.data_dir is not None and folder_problem(cfg.data_dir)),
            ("--dev-file", cfg.dev_file, cfg.dev_file is not None and file_problem(cfg.dev_file))):
        if problem:
            raise ValueError(f"{flag} {value!r}: {problem}")
    if cfg.mlm_weight != TrainConfig.mlm_weight and not cfg.do_mlm:
        raise ValueError(f"--mlm-weight {cfg.mlm_weight} weighs the MLM loss: it needs --do-mlm")
    if cfg.view_dropout is not None and cfg.fixed_mask:
        raise ValueError("--view-dropout gives each view its own rate; --fixed-mask gives both one mask")
    if cfg.view_dropout is not None and cfg.dropout != TrainConfig.dropout:
        raise ValueError(f"--view-dropout {' '.join(map(str, cfg.view_dropout))} is each view's --dropout: "
                         f"--dropout {cfg.dropout} would be unused")
    if cfg.augment is not None:
        augment.check(cfg.augment, cfg.model)  # the spec, and what it needs here (WordNet, an MLM head)
        if Path(cfg.train_file).suffix.lower() == ".csv":
            raise ValueError(f"--augment {cfg.augment} augments unsupervised views: it needs a .txt training "
                             f"file, not {cfg.train_file}")
        if cfg.fixed_mask:
            raise ValueError("--fixed-mask encodes the first view only: the second view's --augment would "
                             "be lost")
    elif cfg.augment_views != TrainConfig.augment_views:
        raise ValueError(f"--augment-views {cfg.augment_views} says which views --augment changes: it needs "
                         f"--augment")
    if cfg.model is not None:
        check_model(cfg.model)


def check_data_and_model(cfg, path, examples, world_size, tokenizer, model):
    """What can be checked once the training file is read and the model loaded."""
    if cfg.batch_size % world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} does not divide among {world_size} processes")
    share = cfg.batch_size // world_size
    if cfg.micro_batch and share % cfg.micro_batch:
        raise ValueError(f"--micro-batch {cfg.micro_batch}: expected an integer that divides each of "
                         f"{world_size} processes' {share} examples")
    if len(examples) < cfg.batch_size:
        raise DataError(f"{path}: {len(examples)} examples, fewer than one batch of {cfg.batch_size}")
    if cfg.fixed_mask and len(examples[0]) != 2:
        raise ValueError(f"--fixed-mask needs two views of one sentence (a .txt file), but {path} has "
                         f"{len(examples[0])} columns: the views would be premises against themselves")
    try:
        dropout_layers(cfg.dropout_layers, model.config.num_hidden_layers)
    except ValueError as e:
        raise ValueError(f"--dropout-layers {e}") from None
    most = min(tokenizer.model_max_length, model.config.max_position_embeddings  # never capped silently
               - (model.config.pad_token_id + 1 if model.config.model_type == "roberta" else 0))
    if cfg.max_length > most:
        raise ValueError(f"--max-length {cfg.max_length}: expected at most {most}, the model's maximum")


def preset_help():
    lines = [f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
             for name, values in PRESETS.items()]
    return "presets (every value can be overridden by its flag):\n" + "\n".join(lines)


def parse_args(argv=None, description=""):
    """(TrainConfig, run options: test, resume, overwrite, compile, transfer)."""
    parser = Parser(description=description, epilog=preset_help(),
                    formatter_class=argparse.RawDescriptionHelpFormatter)  # (formats/command_line.py)
    parser.add_argument("--preset", default="quick", choices=PRESETS, help="starting values (default: quick)")
    flag = lambda name, **kw: parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                                                  **kw)
    add_common_flags(parser, pooler=False, precision=None)  # --model, --data-dir, --precision (cli.py)
    flag("train_file", help="one sentence a line (.txt, unsupervised) or sent0,sent1[,hard_neg] (.csv, "
                            "supervised); a path, or relative to the data folder")
    flag("output_dir", help="where best/, last/ and log.jsonl go")
    flag("max_steps", type=int, help="number of updates (overrides --epochs)")
    flag("epochs", type=float, help="passes over the training file (given alone, it replaces a preset's "
                                    "max_steps)")
    flag("eval_steps", type=int, help="evaluate on STS-B dev (and save the state to resume) every N steps")
    flag("dev_file", metavar="FILE", help="select the model on these sentence pairs instead of STS-B dev: a "
                                          ".csv or .tsv with a header naming sentence1, sentence2, score")
    flag("batch_size", type=int, help="examples per batch, over all processes (each gives 2 or 3 sentences)")
    flag("lr", type=float, help="peak learning rate (AdamW, linear decay to 0, no warm-up)")
    flag("max_length", type=int, help="tokens per sentence in training")
    flag("temp", type=float, help="temperature tau of the contrastive loss")
    flag("pooler", choices=POOLERS, help="training pooler; cls trains an MLP over [CLS]")
    flag("mlp_only_train", action=argparse.BooleanOptionalAction, help="use the MLP in training only")
    flag("hard_negative_weight", type=float, help="log-space weight of each anchor's own hard negative")
    flag("dropout", type=float, help="dropout probability p of every kind (hidden, attention, embeddings)")
    flag("hidden_dropout", type=float, metavar="P", help="p of the hidden dropout (each layer's two residual "
                                                         "branches), in place of --dropout's")
    flag("attention_dropout", type=float, metavar="P", help="p of the dropout on the attention "
                                                            "probabilities, in place of --dropout's")
    flag("embedding_dropout", type=float, metavar="P", help="p of the dropout on the embeddings' output (no "
                                                            "layer's), in place of --dropout's")
    flag("dropout_layers", metavar="SPEC", help="the encoder layers that drop: all (default), top:K (the "
                                                "last K) or bottom:K; the others drop nothing")
    flag("view_dropout", type=float, nargs=2, metavar=("P1", "P2"),
         help="each view its own --dropout: P1 the first view's, P2 the others' (positives, in-batch and "
              "hard negatives); P2 0: a clean view")
    flag("fixed_mask", action="store_true", help="share one dropout mask between the two views")
    flag("do_mlm", action="store_true", help="add the auxiliary masked-language-modelling loss (mlm.py)")
    flag("mlm_weight", type=float, help="weight lambda of the MLM loss (default 0.1)")
    flag("micro_batch", type=int, metavar="K",
         help="compute the batch's update K examples at a time (gradient caching, gradcache.py): the same "
              "update in a fraction of the memory, for a --batch-size that does not fit; about one more "
              "forward pass of time")
    flag("augment", metavar="SPEC", help="Table 1: augment the unsupervised views: crop:K, word_deletion:K, "
                                         "delete_one_word, synonym (needs nltk's WordNet) or mlm:K (needs a "
                                         "model with its MLM head); K a fraction. Dropout stays on "
                                         "(--dropout 0: off)")
    flag("augment_views", type=int, choices=(1, 2), help="views --augment changes: 2 (default), each view "
                                                         "its own draw; 1, the second view only (the paper "
                                                         "does not say which)")
    flag("similarity", choices=SIMILARITIES, help="sim() of the loss: cos (default) or dot, eq. 1 without "
                                                  "the normalisation (Table D.1)")
    flag("seed", type=int, help="random seed")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output-dir where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in an --output-dir that holds a run: its results are deleted")
    parser.add_argument("--no-test", dest="test", action="store_false", help="skip the seven STS test sets")
    parser.add_argument("--transfer", action="store_true",
                        help="also evaluate the best checkpoint on SentEval's seven transfer tasks")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model for training (default: on a GPU only)")
    args = vars(parser.parse_args(argv))
    options = {k: args.pop(k) for k in ("test", "resume", "overwrite", "compile", "transfer")}
    if options["resume"] and options["overwrite"]:
        parser.error("--resume continues a run and --overwrite deletes it: choose one")
    values = {**PRESETS[args.pop("preset")], **{k: v for k, v in args.items() if v is not None}}
    if args["epochs"] is not None and args["max_steps"] is None:
        values["max_steps"] = None  # --epochs given: the preset's step count no longer overrides it
    return TrainConfig(**{k: v for k, v in values.items()
                          if k in {f.name for f in fields(TrainConfig)}}), options


def differences(config, cfg):
    """The settings of a run.json's config that cfg changes ("name old -> new"), but where the run is and the
    paths of the training and dev files (their contents are pinned, and compared by RunFolder)."""
    now = experiment(cfg)
    return [f"{k} {config.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(config) | set(now))
            if config.get(k) != now.get(k) and k not in ("output_dir", "train_file", "dev_file")]


def experiment(cfg):  # what must match to resume (settings off by default only when set: older runs match)
    drop = {"data_dir"} | (set() if cfg.do_mlm else {"do_mlm", "mlm_weight"})
    drop |= set() if cfg.micro_batch else {"micro_batch"}
    drop |= set() if cfg.augment else {"augment", "augment_views"}
    drop |= set() if cfg.similarity != "cos" else {"similarity"}
    drop |= {k for k in ("hidden_dropout", "attention_dropout", "embedding_dropout", "view_dropout",
                         "dev_file") if getattr(cfg, k) is None}
    drop |= set() if cfg.dropout_layers != "all" else {"dropout_layers"}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k not in drop}
