"""Run under torchrun (2 processes, gloo) by tests/test_distributed.py: gradients of the contrastive loss
of one global batch split over the processes, with the batch gathered our way (GatherBatch, with autograd)
and the authors' way (without; only the local share keeps its gradient), against one process holding the
whole batch. Writes the largest differences as JSON to the path given as argument."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bert import BertConfig, BertModel  # noqa: E402
from simcse import contrastive_loss, embed_views  # noqa: E402
from train import GatherBatch  # noqa: E402


def authors_gather(z):
    """cl_forward's way: all_gather without autograd, then the local share put back with its gradient."""
    shares = [torch.zeros_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(shares, z.contiguous())
    shares[dist.get_rank()] = z
    return torch.cat(shares, dim=1)


def gradients(model, batch, n_views, gather=None, anchors=slice(None)):
    model.zero_grad()
    z = embed_views(model, batch, n_views, "cls")
    loss = contrastive_loss(gather(z) if gather else z, 0.05, 1.0, anchors)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return loss.detach(), grads


def main(out_path):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    n_views, batch, length, share = 3, 8, 6, 8 // world  # supervised triplets, a hard-negative weight of 1
    ids = torch.randint(5, 100, (n_views, batch, length))
    mask = torch.ones_like(ids)
    mask[..., 4:] = torch.randint(0, 2, (n_views, batch, 2))  # some padding
    whole = {"input_ids": ids.flatten(0, 1), "attention_mask": mask.flatten(0, 1)}
    mine = {k: v.view(n_views, batch, length)[:, rank * share:(rank + 1) * share].flatten(0, 1)
            for k, v in whole.items()}

    single_loss, single = gradients(model, whole, n_views)
    result = {}
    for name, gather in (("ours", GatherBatch.apply), ("authors", authors_gather)):
        loss, grads = gradients(model, mine, n_views, gather, anchors=slice(rank * share, (rank + 1) * share))
        dist.all_reduce(loss)
        dist.all_reduce(grads)  # what DistributedDataParallel does: the mean of the processes' gradients
        loss, grads = loss / world, grads / world
        result[name] = {"loss": (loss - single_loss).abs().item(), "grad": (grads - single).abs().max().item()}
    result["grad_scale"] = single.abs().max().item()

    model.set_dropout(0.1)  # with dropout, each process's two views differ
    model.train()
    torch.manual_seed(rank)
    with torch.no_grad():
        z = embed_views(model, {k: v[:2 * share] for k, v in mine.items()}, 2, "cls_before_pooler")
    result["views_differ"] = bool((z[0] != z[1]).any())
    gathered = [None] * world
    dist.all_gather_object(gathered, result)
    if rank == 0:
        Path(out_path).write_text(json.dumps(gathered))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
