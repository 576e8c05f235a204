"""--micro-batch K: one update over the whole batch, computed K examples at a time -- gradient caching (Gao,
Zhang, Han & Callan 2021, "Scaling deep contrastive learning batch size under memory limited setup").

In-batch negatives make the batch size part of the method (eq. 1 and 5; Appendix A goes up to 512), and the
loss ties every example to every other one, so the batch cannot be cut into pieces whose gradients add up,
as in gradient accumulation. But the loss reaches the encoder only through the embeddings z:
dL/dθ = Σ_i dL/dz_i · dz_i/dθ. So, as train.update's plain step computes it, but in three steps:
  1. embed the batch K examples at a time without autograd: no activations are kept;
  2. the contrastive loss of all N embeddings (every in-batch negative) and its gradient dL/dz, N x d numbers;
  3. embed each chunk again, with autograd, and backpropagate its rows of dL/dz into the encoder.
Memory: one chunk's activations instead of the batch's; time: one more forward pass.

Step 3 must replay step 1's dropout masks. Dropout IS the augmentation of unsupervised SimCSE (section 3): the
two views of a sentence differ only by their masks. dL/dz is the gradient at the embeddings step 1 drew; a
pass with new masks gives other embeddings, and dL/dz pushed through them is the gradient of no loss (it
would pull together two views that the loss never saw). So each chunk's random state is saved before step 1
and restored before step 3: the same masks, and the update is the whole batch's (tests/test_gradcache.py).
"""
import contextlib

import torch
import torch.nn.functional as F

from extras.mlm import IGNORE
from simcse import contrastive_loss, embed_views


def rng_state(device):
    """The random state the dropout masks are drawn from on this device."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(state, device):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def chunks(batch, n_views, k):
    """The batch's examples k at a time, every view of an example in the same chunk: the batch holds n_views
    blocks of rows (view by view, train.py), and chunk c is rows [ck, (c+1)k) of every block."""
    blocks = {name: t.view(n_views, -1, *t.shape[1:]) for name, t in batch.items()}
    n = next(iter(blocks.values())).shape[1]
    return [{name: b[:, c:c + k].flatten(0, 1) for name, b in blocks.items()} for c in range(0, n, k)]


def cached_backward(model, batch, n_views, cfg, gather, autocast, mlm=None, mlm_seed=None):
    """The plain step's loss.backward(), cfg.micro_batch examples at a time: the parameter gradients of the
    whole batch's loss (contrastive, + mlm_weight x L_mlm with --do-mlm). Returns that loss, detached, and the
    embeddings it compares (views, batch, d), as simcse.loss.
    gather: the whole batch from every process's share (distributed.py); autocast: speed.Speed.autocast."""
    device, k, views_dropout = batch["input_ids"].device, cfg.micro_batch, cfg.views_dropout()
    pieces = chunks(batch, n_views, k)
    states, z = [], []
    with torch.no_grad():  # 1. the embeddings of every chunk, no activations kept
        for piece in pieces:
            states.append(rng_state(device))  # what draws this chunk's masks: replayed in 3.
            with autocast():
                z.append(embed_views(model, piece, n_views, cfg.pooler, cfg.fixed_mask, views_dropout))
    after = rng_state(device)  # where the plain step's random draws go on (the MLM pass's masks)
    z = torch.cat(z, dim=1).float().requires_grad_()  # (views, N, d): the plain step's rows, in its order
    whole = gather(z)  # the whole batch's embeddings, every process's share
    loss = contrastive_loss(whole, cfg.temp, cfg.hard_negative_weight, cfg.similarity)  # 2. eq. 1 or 5
    (dz,) = torch.autograd.grad(loss, z)  # dL/dz: this process's rows (GatherBatch sends back its share)
    if mlm:  # L_mlm is a mean over the whole batch's chosen tokens: each chunk adds its sum / their number
        masked, labels = mlm.masks(batch, mlm_seed)  # the whole batch's masks, as without --micro-batch
        n_chosen = (labels != IGNORE).sum()
        mlm_pieces = chunks({"masked": masked, "labels": labels}, n_views, k)
        mlm_sum = torch.zeros((), device=device)
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)  # DDP: average the gradients once, at the end
    for c, (piece, dz_c) in enumerate(zip(pieces, dz.split(k, dim=1))):  # 3. each chunk again, with autograd
        with contextlib.nullcontext() if c == len(pieces) - 1 else no_sync():
            set_rng_state(states[c], device)  # this chunk's masks of 1., again
            with autocast():
                z_c = embed_views(model, piece, n_views, cfg.pooler, cfg.fixed_mask, views_dropout)
                roots, grads = [z_c], [dz_c.to(z_c.dtype)]  # z_c's backward with dL/dz_c: its part of dL/dθ
                if mlm:
                    set_rng_state(after, device)  # the MLM pass's own masks, drawn on from where 1. ended
                    part = F.cross_entropy(*mlm.predictions(model, piece, **mlm_pieces[c]), reduction="sum")
                    after = rng_state(device)
                    mlm_sum += part.detach()
                    roots.append(cfg.mlm_weight * part / n_chosen)
                    grads.append(None)
            torch.autograd.backward(roots, grads)  # one backward: one DistributedDataParallel reduction
    set_rng_state(after, device)  # as after the plain step's draws
    return (loss.detach() + cfg.mlm_weight * mlm_sum / n_chosen if mlm else loss.detach()), whole.detach()
