"""Train SimCSE: unsupervised (Wikipedia sentences, dropout as augmentation) or supervised (NLI triplets).

    python train.py --preset quick-sup --dropout 0.2   # presets, and any value overridden: see --help
    torchrun --nproc_per_node 4 train.py --preset sup-bert   # the paper's supervised run on 4 GPUs
"""
from formats.command_line import command_errors, quiet_start
quiet_start(__name__)  # Ctrl-C while the imports below run: exit status 130, no traceback

import math
from collections import namedtuple

import torch
from tqdm.auto import tqdm

import data
import eval_sts
import eval_transfer
import simcse
from bert import BertModel
from extras.augment import MaskedLMFill, augment_batch
from extras.gradcache import cached_backward
from extras.mlm import MaskedLM
from formats.checkpoint import default_model
from formats.files import write_file
from formats.senteval import read_pairs
from formats.tokenizer import load_tokenizer
from infra.cli import json_text
from infra.config import TrainConfig, check, check_data_and_model, parse_args
from infra.distributed import Processes
from infra.guard import NonFiniteGuard
from infra.run_folder import RunFolder
from infra.speed import Speed


def train(cfg: TrainConfig, progress=True, test=True, resume=False, overwrite=False, compile=None,
          transfer=False, start_scores=None):
    """Returns {"log": evaluation records, "best": record, "test": scores, "transfer": scores} on the first
    process, else None. start_scores: a grid's evaluations of starting models (run_folder.StartScores), to
    take step 0's from."""
    check(cfg)  # every flag, before any work (config.py)
    procs = Processes()  # one, or several under torchrun (distributed.py)
    run = RunFolder(cfg, resume, overwrite, procs.master)  # never clobbers a finished run (run_folder.py)
    train_path, examples, skipped = data.read_training_file(cfg.train_file, cfg.data_dir, procs.master)
    n_views = len(examples[0])  # 2: one sentence twice (unsupervised); 3: premise, entailment, contradiction
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * (len(examples) // cfg.batch_size))
    dev = (data.load_sts("STSBenchmark", cfg.data_dir, ["dev"])["dev"] if cfg.dev_file is None  # model
           else read_pairs(cfg.dev_file))  # selection (Appendix A), or on your own pairs
    key, columns = cfg.dev_key, cfg.batch_size * (n_views - 1)  # the log's dev score; each anchor's choices
    pooler = simcse.embedding_pooler(cfg.pooler, cfg.mlp_only_train)  # the embedding that is evaluated

    model_name = cfg.model or default_model()
    model, tokenizer = BertModel.from_pretrained(model_name), load_tokenizer(model_name)
    check_data_and_model(cfg, train_path, examples, procs.world_size, tokenizer, model)  # (config.py)
    parts = setup(cfg, model, tokenizer, model_name, procs, total_steps, compile)
    state = run.start(model, parts.optimizer, parts.schedule, (train_path, len(examples)), dev.source)
    parts.guard.nonfinite += state["nonfinite"]  # updates skipped before a --resume
    procs.print(f"{len(examples)} examples from {train_path} ({skipped} blank lines or rows skipped); "
                f"{total_steps} step(s) of {cfg.batch_size} on {procs.world_size} process(es); "
                f"model {model_name} on {procs.device}; evaluating with {pooler} on {dev.source}; chance: "
                f"loss ln {columns} = {math.log(columns):.2f}, top1 1/{columns}")

    def evaluate_dev(step):  # the dev set on the first process, which logs and saves; the others wait
        means = parts.guard.means()  # the loss and the signals of the steps since the last evaluation
        if procs.master:
            score = lambda: eval_sts.dev_metrics(model, tokenizer, dev, pooler, key)
            shared = step == 0 and start_scores  # a grid's runs that start alike evaluate the start once
            metrics = start_scores.get(model, tokenizer, pooler, dev, score) if shared else score()
            run.save(step, means, metrics, int(parts.guard.nonfinite.item()), model, tokenizer,
                     parts.optimizer, parts.schedule)  # log, best/, the state to resume from
        procs.wait()

    if not state["log"]:
        procs.print(f"step 0: evaluating the starting model on {dev.source.name} ...")
        evaluate_dev(0)
    batches = data.batches(len(examples), cfg.batch_size, cfg.seed, after_step=state["step"])
    bar = tqdm(range(state["step"] + 1, total_steps + 1), "train", disable=not (progress and procs.master))
    for step in bar:
        rows = procs.share(next(batches))  # this process's examples of the step's batch
        update(parts, cfg, [examples[i][k] for k in range(n_views) for i in rows], n_views, step)  # by view
        if step % cfg.eval_steps == 0 or step == total_steps:
            evaluate_dev(step)
            bar.set_postfix_str(progress_line(state["log"][-1], key, columns)) if procs.master else None
    procs.end()
    if procs.master:
        return test_best(run, tokenizer, pooler, procs.device, test, transfer, progress)


def progress_line(record, key, columns):
    """The progress bar after an evaluation: the dev score and the means of the interval's steps (guard.py)
    -- a loss near ln(columns) and top1 near 1/columns are chance: nothing learnt."""
    f = lambda k: "-" if record[k] is None else f"{record[k]:.3g}"
    return (f"dev {record[key]:.2f} loss {f('loss')} (chance {math.log(columns):.2f}) top1 {f('top1')} "
            f"cos+ {f('pos_cos')} cos- {f('neg_cos')} |g| {f('grad_norm')}")


Parts = namedtuple("Parts", "model params optimizer schedule guard fast tokenizer procs mlm fill")


def setup(cfg, model, tokenizer, model_name, procs, total_steps, compile=None):
    """What one training process updates with (train() and `python -m bench train`): the model with a new
    MLP, on its device, as the step runs it; AdamW and its schedule; the NaN guard; the MLM head and
    --augment mlm:K's filler when asked."""
    fast = Speed(procs.device, compile, cfg.precision)  # bf16 and compile where they pay (speed.py)
    model.set_dropout(**cfg.dropout_of(0))  # p, the augmentation (Table 3); each kind's, each layer's
    torch.manual_seed(cfg.seed)
    if cfg.pooler == "cls":
        simcse.reset_mlp(model)  # a new MLP over [CLS] (section 3)
    else:
        model.pooler.requires_grad_(False)  # BERT's pooler is no part of this embedding: not trained
    mlm = MaskedLM(model, tokenizer, model_name) if cfg.do_mlm else None
    # --augment mlm:K: the words predicted by a frozen copy of the starting checkpoint's MLM (augment.py)
    fill = MaskedLMFill(model_name, procs.device) if (cfg.augment or "").startswith("mlm:") else None
    model.to(procs.device)
    params = [p for p in model.parameters() if p.requires_grad]
    # AdamW without weight decay, as the authors' runs (HF Trainer); fused: one kernel, and the NaN guard.
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / total_steps)  # linear to 0
    guard = NonFiniteGuard(optimizer, procs.device, procs, 0, fast.check_every)  # guard.py
    step_model = procs.wrap(fast.prepare(model)).train()  # compiled on a GPU; DDP under torchrun
    return Parts(step_model, params, optimizer, schedule, guard, fast, tokenizer, procs, mlm, fill)


def update(parts, cfg, sentences, n_views, step):
    """One step: this process's sentences of the step's batch (n_views blocks, view by view) tokenised, the
    loss (eq. 1 or 5), its gradient, clipped, and the update -- skipped if anything is not finite."""
    procs, fast = parts.procs, parts.fast
    seed = lambda stream: step_seed(cfg.seed, procs.rank, step, stream)  # the step's random streams
    if cfg.augment:  # Table 1
        sentences = augment_batch(sentences, cfg, [seed(AUGMENTATION + v) for v in (0, 1)], parts.fill)
    batch = parts.tokenizer(sentences, cfg.max_length, fast.fixed_shapes)
    batch = {k: v.to(procs.device, non_blocking=True) for k, v in batch.items()}
    torch.manual_seed(seed(DROPOUT))  # the step's dropout masks
    parts.optimizer.zero_grad(set_to_none=True)
    mlm_seed = seed(MLM_MASKS)  # the step's masked tokens, with --do-mlm
    if cfg.micro_batch:  # the same loss and gradient, K examples at a time, in less memory (gradcache.py)
        loss, z = cached_backward(parts.model, batch, n_views, cfg, procs.gather, fast.autocast, parts.mlm,
                                  mlm_seed)
    else:  # over the whole batch (+ the MLM term), bf16 where it pays (speed.py)
        with fast.autocast():
            loss, z = simcse.loss(parts.model, batch, n_views, cfg, procs.gather, parts.mlm, mlm_seed)
        loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(parts.params, 1.0)  # as the authors' Trainer; the norm before
    seen = simcse.signals(z.detach(), cfg.temp, cfg.hard_negative_weight, cfg.similarity)  # is it learning?
    parts.guard.skip_if_nonfinite(loss, grad_norm, step, seen)  # a NaN never reaches the weights (guard.py)
    parts.optimizer.step()
    parts.schedule.step()
    return loss


DROPOUT, MLM_MASKS, AUGMENTATION = 0, 1, 2  # a step's streams of random numbers (augmentation: 2 + view)


def step_seed(seed, process, step, stream):
    """The seed of one stream of random numbers (the dropout masks, MLM's masked tokens, a view's
    augmentation) of one process at one training step. Every random draw of training is a function of these
    four numbers alone, never of what ran before it, as the batches are (data.batches): so --resume after a
    kill draws the masks the run it continues would have drawn, torchrun's processes draw masks of their own,
    and the streams do not shift each other (--do-mlm leaves the dropout masks as they are). Python's hash of
    a tuple of ints is the same in every process and run (a str's is not)."""
    return hash((seed, process, step, stream))



def test_best(run, tokenizer, pooler, device, test=True, transfer=False, progress=True):
    """best/ on the seven STS test sets (test_scores.json; Table 5 of the paper) and, asked, SentEval's
    transfer tasks (transfer_scores.json; Appendix E, Table E.1)."""
    best, log = run.state["best"], run.state["log"]
    key, name = run.cfg.dev_key, "STS-B dev" if run.cfg.dev_key == "stsb_dev" else run.cfg.dev_file
    print(f"best {name} {best[key]:.2f} at step {best['step']} (step 0: {log[0][key]:.2f}); checkpoint in "
          f"{run.out / 'best'}")
    model = BertModel.from_pretrained(str(run.out / "best")).to(device)
    result = {"log": log, "best": best, "test": None, "transfer": None}
    for name, wanted, evaluation, title in ((("test", test, eval_sts, "STS test"),
                                             ("transfer", transfer, eval_transfer, "transfer tasks"))):
        if wanted:
            scores = evaluation.evaluate(model, tokenizer, pooler, data_dir=run.cfg.data_dir,
                                         progress=progress)
            write_file(run.out / f"{name}_scores.json", json_text(scores, indent=2))
            print(f"------ {title} | {run.out / 'best'} | pooler {pooler} ------")
            print(evaluation.format_table(scores["scores"]))
            result[name] = scores["scores"]
    return result


def main(argv=None):
    cfg, options = parse_args(argv, __doc__)  # every flag read and checked (infra/config.py)
    interrupted = "nothing is lost; continue with the same command and --resume"
    if options["overwrite"]:  # its deletion of the old run may have begun
        interrupted = "the same command starts over; --resume in place of --overwrite keeps its saves"
    with command_errors(interrupted):
        train(cfg, **options)


if __name__ == "__main__":
    main()
