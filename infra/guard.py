"""The NaN/inf guard: an update whose loss or gradient is not finite is skipped, and counted; too many in a
row stop the run. Decided on the device (the fused AdamW skips the update itself), so a GPU never waits. It
also sums, on the device, what the log reports of the finite steps (the loss and the signals of learning),
read once per evaluation."""
import torch

IN_A_ROW = 5  # this many skipped updates in a row stop the run
MEANS = ("loss", "top1", "pos_cos", "neg_cos", "grad_norm")  # simcse.signals: top1, pos_cos, neg_cos


class NonFiniteGuard:
    def __init__(self, optimizer, device, processes, nonfinite=0, check_every=1):
        adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
        if not (adam and optimizer.defaults["fused"]):
            raise TypeError(f"the NaN guard needs a fused Adam or AdamW (it skips an update through their "
                            f"found_inf); {type(optimizer).__name__} would apply it")
        self.optimizer = optimizer
        self.processes, self.check_every = processes, check_every  # reading a GPU number waits for the GPU
        zero = lambda: torch.zeros((), device=device)
        self.sums, self.finite_steps, self.in_a_row = torch.zeros(len(MEANS), device=device), zero(), zero()
        self.nonfinite = zero() + nonfinite  # skipped updates, the whole run

    def skip_if_nonfinite(self, loss, grad_norm, step, signals):
        """signals: simcse.signals of the step; grad_norm: the norm before clipping."""
        bad = ~torch.isfinite(grad_norm)  # a non-finite loss makes a non-finite gradient
        self.optimizer.found_inf = bad.float()  # fused AdamW then leaves the weights and its state alone
        values = torch.cat([loss.detach().float().view(1), signals.float(), grad_norm.float().view(1)])
        self.sums += torch.where(bad, 0.0, values)
        self.finite_steps += ~bad
        self.nonfinite += bad
        self.in_a_row = (self.in_a_row + 1) * bad
        if step % self.check_every == 0 and self.in_a_row.item() >= IN_A_ROW:
            raise FloatingPointError(f"{int(self.in_a_row.item())} non-finite losses or gradients in a row "
                                     f"(last at step {step}); stopped. Lower --lr? best/ is untouched")

    def means(self):
        """{loss, top1, pos_cos, neg_cos, grad_norm}: the means over the finite steps since the last call, of
        all processes (None where there was none)."""
        *sums, n = self.processes.sum(torch.cat([self.sums, self.finite_steps.view(1)])).tolist()
        self.sums.zero_()
        self.finite_steps.zero_()
        return {k: total / n if n > 0 else None for k, total in zip(MEANS, sums)}
