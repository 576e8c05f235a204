"""What makes a training step fast on this device, none of which changes the method.

On a GPU: every batch padded to max_length (fixed shapes), so that the torch.compile'd step is reused;
bf16 autocast (fp32 where the GPU has no bf16); numbers read off the GPU only every 10 steps.
On a CPU: the dense layers on real tokens only (bert.Tokens), fp32, no compile.
"""
import contextlib

import torch


class Speed:
    def __init__(self, device, compile=None):
        gpu = device.type == "cuda"
        self.fixed_shapes = gpu
        self.compile = gpu if compile is None else compile
        self.amp_dtype = torch.bfloat16 if gpu and torch.cuda.is_bf16_supported() else None
        self.check_every = 10 if gpu else 1  # steps between reads of a number off the device
        self.device = device

    def prepare(self, model):  # the model the training step runs
        model.pack_padding = not self.fixed_shapes
        return torch.compile(model) if self.compile else model

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)
