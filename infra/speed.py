"""What makes a training step fast on this device, none of which changes the method (bert.py's own branches,
packed tokens and attention written out in training on a CPU, are explained where they are).

On a GPU: every batch padded to max_length (fixed shapes), so that the torch.compile'd step is reused;
bf16 autocast; numbers read off the GPU only every 10 steps.
On a CPU: no compile, dropout masks drawn four at a time (FastDropout, switched in for nn.Dropout: the same
function), and bf16 autocast where the CPU has bf16 matrix units (Intel AMX, AVX512-BF16 on Intel and AMD
Zen 4): matrix products run in bf16, the weights, the optimizer and the loss stay fp32. Elsewhere, fp32.
"""
import contextlib
import functools

import torch
from torch import nn


PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def cpu_has_bf16():
    """Does this CPU multiply bf16 matrices in hardware (AMX or AVX512-BF16)?"""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
        return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:  # not Linux: ask PyTorch
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        model = "?"
    units = [u for u, has in (("AMX", torch.cpu._is_amx_tile_supported()),
                              ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported())) if has]
    return f"{model} ({', '.join(units) or 'no bf16 matrix units'}; torch threads {torch.get_num_threads()})"


def autocast_dtype(device, precision="auto"):
    """torch.bfloat16 where bf16 is asked for, or is 'auto' and pays on this hardware; None for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    has_bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    if precision == "bf16" and not has_bf16:
        raise ValueError(f"--precision bf16: this {device.type.upper()} has no bf16 matrix units "
                         "(use fp32 or auto)")
    return torch.bfloat16 if has_bf16 else None


def autocast(device, dtype):
    """A context in which matrix products run in `dtype` (None: fp32, nothing changes)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


class Speed:
    def __init__(self, device, compile=None, precision="auto"):
        gpu = device.type == "cuda"
        self.device, self.fixed_shapes = device, gpu
        self.compile = gpu if compile is None else compile
        self.amp_dtype = autocast_dtype(device, precision)
        self.check_every = 10 if gpu else 1  # steps between reads of a number off the device

    def prepare(self, model):
        """The model the training step runs: the same weights, the same function, faster here."""
        if self.device.type == "cpu":  # a GPU draws its masks fast (and compiled, in the fused kernels)
            fast_dropout(model)
        return torch.compile(model) if self.compile else model

    def autocast(self):
        return autocast(self.device, self.amp_dtype)


class FastDropout(nn.Dropout):
    """nn.Dropout with masks drawn four at a time. PyTorch's CPU dropout draws one random number per element
    from a generator that runs on one core, at about 5 ns each: 15% of a MiniLM step. Here one 64-bit draw
    gives four 16-bit numbers r, and an element is kept where r >= p * 2^16: p is rounded to a multiple of
    2^-16 (0.1 -> 0.100006); every mask is still a function of the seed."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
        r = bits.view(torch.int16)[:n].view(x.shape)  # uniform on [-2^15, 2^15)
        keep = r >= round(self.p * 2**16) - 2**15
        return x.mul(keep).mul_(1 / (1 - self.p))  # as nn.Dropout: the scale in fp32, x's dtype kept


def fast_dropout(model):
    """Every nn.Dropout of the model replaced by a FastDropout of the same p."""
    for name, m in list(model.named_modules()):
        if type(m) is nn.Dropout:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, FastDropout(m.p))
