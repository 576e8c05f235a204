"""Run under torchrun (2 processes, gloo) by tests/test_distributed.py: the gradient of the contrastive loss
of one global batch split over the processes, gathered our way (distributed.GatherBatch) and the authors' way
(cl_forward: all_gather without autograd, only the local share keeps its gradient), against one process
holding the whole batch and encoding each share with that share's dropout masks. Two cases: supervised
triplets through the `cls` pooler (hard-negative weight 1), and unsupervised pairs through `avg` with
dropout on (BERT's pooler unused, as in a real `--pooler avg` run). Writes the differences as JSON."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bert import BertConfig, BertModel  # noqa: E402
from infra.distributed import GatherBatch  # noqa: E402
from simcse import contrastive_loss, embed_views  # noqa: E402


def authors_gather(z):
    """cl_forward's way: all_gather without autograd, then the local share put back with its gradient."""
    shares = [torch.zeros_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(shares, z.contiguous())
    shares[dist.get_rank()] = z
    return torch.cat(shares, dim=1)


def share_of(batch, n_views, rank, share):
    return {k: v.view(n_views, -1, v.shape[-1])[:, rank * share:(rank + 1) * share].flatten(0, 1)
            for k, v in batch.items()}


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def compare(model, whole, n_views, pooler, weight, world):
    """{"ours"/"authors": {"loss", "grad"} differences from one process, "grad_scale"}."""
    share = whole["input_ids"].shape[0] // n_views // world
    rank = dist.get_rank()
    model.zero_grad()  # one process, whole batch; share r encoded after seeding with r, as process r does
    z = []
    for r in range(world):
        torch.manual_seed(r)
        z.append(embed_views(model, share_of(whole, n_views, r, share), n_views, pooler))
    single_loss = contrastive_loss(torch.cat(z, dim=1), 0.05, weight)
    single_loss.backward()
    single = grads(model)
    result = {"grad_scale": single.abs().max().item()}
    for name, gather in (("ours", GatherBatch.apply), ("authors", authors_gather)):
        model.zero_grad()
        torch.manual_seed(rank)
        loss = contrastive_loss(
            gather(embed_views(model, share_of(whole, n_views, rank, share), n_views, pooler)), 0.05, weight)
        loss.backward()
        g = grads(model)
        dist.all_reduce(g)  # what DistributedDataParallel does: the mean of the processes' gradients
        result[name] = {"loss": (loss - single_loss).abs().item(),
                        "grad": (g / world - single).abs().max().item()}
    return result


def main(out_path):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64))
    ids = torch.randint(5, 100, (3, 8, 6))
    mask = torch.ones_like(ids)
    mask[..., 4:] = torch.randint(0, 2, (3, 8, 2))  # some padding
    triplets = {"input_ids": ids.flatten(0, 1), "attention_mask": mask.flatten(0, 1)}
    pairs = {k: torch.cat([v[:8], v[:8]]) for k, v in triplets.items()}  # each sentence twice

    result = {}
    model.set_dropout(0.0)
    result["cls"] = compare(model.eval(), triplets, 3, "cls", 1.0, world)
    model.set_dropout(0.1)
    model.pooler.requires_grad_(False)  # as train.py does for a pooler that does not use it
    result["avg"] = compare(model.train(), pairs, 2, "avg", 0.0, world)

    torch.manual_seed(rank)  # each process draws its own masks: the same sentences give other embeddings
    with torch.no_grad():
        z = embed_views(model, pairs, 2, "avg")
    others = [torch.empty_like(z) for _ in range(world)]
    dist.all_gather(others, z)
    result["views_differ"] = bool((z[0] != z[1]).any())
    result["processes_differ"] = bool((others[0] != others[1]).any())
    gathered = [None] * world
    dist.all_gather_object(gathered, result)
    if rank == 0:
        Path(out_path).write_text(json.dumps(gathered))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
