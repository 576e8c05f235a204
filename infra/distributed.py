"""Several processes, one batch (torchrun): each process encodes its share of every batch, and the
contrastive loss still sees the whole batch, so training equals one process holding it all.

    torchrun --nproc_per_node 4 train.py ...     # NCCL on GPUs, gloo on CPUs; plain `python train.py`: one
"""
import os

import torch
import torch.distributed as dist


class Processes:
    """This process's rank, the number of processes, its device; one process when not under torchrun."""

    def __init__(self):
        cuda = torch.cuda.is_available()
        self.rank, self.world_size = 0, 1
        self.device = torch.device("cuda" if cuda else "cpu")
        if "RANK" in os.environ:  # started by torchrun
            dist.init_process_group("nccl" if cuda else "gloo")
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
            if cuda:
                self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
                torch.cuda.set_device(self.device)
        self.master = self.rank == 0  # the one that evaluates, logs, saves and shows progress

    def print(self, *args):  # the first process speaks for all
        if self.master:
            print(*args)

    def share(self, rows):  # this process's slice of a batch's rows
        n = len(rows) // self.world_size
        return rows[self.rank * n:(self.rank + 1) * n]

    def wrap(self, model):  # DistributedDataParallel averages the parameter gradients of all processes
        return torch.nn.parallel.DistributedDataParallel(model) if self.world_size > 1 else model

    def gather(self, z):  # (views, share, d) -> (views, batch, d): the whole batch, on every process
        return GatherBatch.apply(z) if self.world_size > 1 else z

    def sum(self, t):  # summed over processes (in place)
        if self.world_size > 1:
            dist.all_reduce(t)
        return t

    def wait(self):  # the others wait while the first process evaluates and saves
        if self.world_size > 1:
            dist.barrier()

    def end(self):
        if self.world_size > 1:
            dist.destroy_process_group()


class GatherBatch(torch.autograd.Function):
    """All processes' embeddings, with the gradient flowing back to each process's own share.

    In-batch negatives (eq. 1 and 5) are the other sentences of the *whole* batch. Every process gathers the
    same whole batch and so computes the same loss L; the gradient of L with respect to its own share is
    its part of the whole gradient. DistributedDataParallel then *averages* over the W processes, so each
    hands back W times its part: the average is the sum, the gradient of one process holding the whole
    batch (tests/test_distributed.py). The authors' cl_forward gathers without this and, averaged, its
    update is the gradient divided by W."""

    @staticmethod
    def forward(ctx, z):
        shares = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(shares, z.contiguous())
        return torch.cat(shares, dim=1)

    @staticmethod
    def backward(ctx, grad):
        return grad.chunk(dist.get_world_size(), dim=1)[dist.get_rank()] * dist.get_world_size()
