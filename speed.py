"""What makes a training step fast on this device, none of which changes the method: switched on here
(`Speed.prepare`), so that bert.py reads as BERT.

On a GPU: every batch padded to max_length (fixed shapes), so that the torch.compile'd step is reused;
bf16 autocast; numbers read off the GPU only every 10 steps.
On a CPU: the network run on real tokens only (PackedBert), attention written out in training, no compile,
dropout masks drawn four at a time (FastDropout), and bf16 autocast where the CPU has bf16 matrix units (Intel
AMX, AVX512-BF16 on Intel and AMD Zen 4): matrix products run in bf16, the weights, the optimizer and the loss
stay fp32. Elsewhere, fp32.
"""
import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

from bert import BertOutput

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
            model = PackedBert(model)
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


class Tokens:
    """The real tokens of a padded (batch, length) batch, packed into a (tokens, hidden) matrix: batches are
    30-60% padding, and every layer but attention acts on each token alone. Attention, where tokens meet,
    puts them back on the (batch, length) grid. The count is padded to a multiple of 64 (padding positions,
    computed, masked, ignored), so that the CPU reuses the bf16 kernels it compiles for each matrix shape."""

    def __init__(self, attention_mask):
        self.shape = attention_mask.shape
        self.mask = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, length): may a query see a key?
        n = min(-(-int(attention_mask.sum()) // 64) * 64, attention_mask.numel())
        self.index = attention_mask.flatten().argsort(descending=True, stable=True)[:n]

    def pack(self, x):  # (batch, length, d) -> (tokens, d)
        return x.flatten(0, 1).index_select(0, self.index)

    def grid(self, x):  # (tokens, d) -> (batch, length, d); zeros at the padding not packed
        x = x.new_zeros(self.shape.numel(), x.shape[-1]).index_copy(0, self.index, x)
        return x.view(*self.shape, -1)


class PackedBert(nn.Module):
    """bert.BertModel's forward pass, with its own modules and weights, on the real tokens only (Tokens):
    the same function (tests/test_bert.py: outputs and gradients to 1e-5). In training on a CPU, attention
    is written out (softmax, dropout, times V): PyTorch's fused kernel with dropout runs a slower fp32 path
    there; in evaluation, and on a GPU, the fused kernel."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False):
        bert = self.bert
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        tokens = Tokens(attention_mask)
        x = tokens.pack(bert.embeddings(input_ids, token_type_ids))
        hidden_states = [x]
        for layer in bert.encoder.layer:  # BertLayer.forward: attention, then the feed-forward block
            x = layer.attention.output(self.attend(layer.attention.self, x, tokens), x)
            x = layer.output(layer.intermediate(x), x)
            hidden_states.append(x)
        last = tokens.grid(x)
        return BertOutput(last, bert.pooler(last[:, 0]),
                          tuple(map(tokens.grid, hidden_states)) if output_hidden_states else None)

    @staticmethod
    def attend(attention, x, tokens):
        """BertSelfAttention.forward on packed tokens x (tokens, hidden)."""
        B, L = tokens.shape
        heads = lambda t: tokens.grid(t).view(B, L, attention.num_heads, -1).transpose(1, 2)
        q, k, v = heads(attention.query(x)), heads(attention.key(x)), heads(attention.value(x))
        if attention.training and x.is_cpu:  # softmax(q k^T / sqrt(d)) v, written out
            scores = (q @ k.transpose(2, 3) / q.shape[-1] ** 0.5).masked_fill(~tokens.mask, float("-inf"))
            y = attention.dropout(scores.softmax(-1)) @ v
        else:
            p = attention.dropout.p if attention.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, tokens.mask, p)
        return tokens.pack(y.transpose(1, 2).reshape(B, L, -1))
