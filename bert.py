"""BERT (Devlin et al., 2019), the encoder SimCSE fine-tunes, in plain PyTorch, every dropout -- unsupervised
SimCSE's only augmentation (section 3) -- in sight. Modules have the names of Hugging Face's modeling_bert.py,
so checkpoints load both ways (checkpoint.py). RoBERTa is this network with other position ids. This file is
what runs, in training and evaluation, on every device; what makes it fast is in it, a branch with its reason.

    model = BertModel.from_pretrained("bert-base-uncased")   # or a local folder; tokenizer.py gives the input
"""
from collections import namedtuple
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from formats import checkpoint


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    model_type: str = "bert"  # or "roberta": the same network but for its position ids


ACTIVATIONS = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.roberta_pad = c.pad_token_id if c.model_type == "roberta" else None

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if self.roberta_pad is not None:  # RoBERTa: real tokens at pad + 1, pad + 2, ...; padding at pad
            real = input_ids.ne(self.roberta_pad).long()
            positions = real.cumsum(1) * real + self.roberta_pad
        # Summed in transformers' order: float addition is not associative, and this keeps us bit-identical.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x + self.position_embeddings(positions)))


class Tokens:
    """Where the tokens of a padded (batch, length) batch are. The layers see them as the rows of one (tokens,
    hidden) matrix; attention, where tokens meet, puts them back on the (batch, length) grid. Every layer but
    attention acts on each token alone, so in training on a CPU the rows are the real tokens only (batches are
    30-60% padding), their count rounded up to a multiple of 64 (padding rows, computed and never attended to)
    so that the CPU reuses the kernels it builds for each matrix shape. Elsewhere every position is a row: a
    GPU's compiled step wants fixed shapes, and evaluation batches sentences of a length (tool.encode)."""

    def __init__(self, attention_mask, pack):
        self.shape = attention_mask.shape
        self.mask = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, length): may a query see a key?
        self.index = None  # every position
        if pack:  # the real tokens first (argsort of the mask), then padding up to a multiple of 64
            n = min(-(-int(attention_mask.sum()) // 64) * 64, attention_mask.numel())
            self.index = attention_mask.flatten().argsort(descending=True, stable=True)[:n]

    def rows(self, x):  # (batch, length, d) -> (tokens, d)
        x = x.flatten(0, 1)
        return x if self.index is None else x.index_select(0, self.index)

    def grid(self, x):  # (tokens, d) -> (batch, length, d), zeros at padding that was not a row
        if self.index is not None:
            x = x.new_zeros(self.shape.numel(), x.shape[-1]).index_copy(0, self.index, x)
        return x.view(*self.shape, -1)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, with dropout on the attention probabilities."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.attention_probs_dropout_prob)  # on the attention probabilities

    def forward(self, x, tokens):  # x: (tokens, hidden), the rows of BertModel.forward
        B, L = tokens.shape
        heads = lambda t: tokens.grid(t).view(B, L, self.num_heads, -1).transpose(1, 2)  # (B, heads, L, d)
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        if self.training and x.is_cpu:  # softmax(q k^T / sqrt(d)) v, written out (the fused kernel below
            # drops out in a slower fp32 path on a CPU)
            scores = (q @ k.transpose(2, 3) / q.shape[-1] ** 0.5).masked_fill(~tokens.mask, float("-inf"))
            y = self.dropout(scores.softmax(-1)) @ v  # dropout on the probabilities: augmentation (section 3)
        else:  # the same in one fused kernel, which draws the dropout mask itself
            y = F.scaled_dot_product_attention(q, k, v, tokens.mask, self.dropout.p if self.training else 0.0)
        return tokens.rows(y.transpose(1, 2).reshape(B, L, -1))


class BertResidual(nn.Module):
    """Dense projection, dropout, residual connection, LayerNorm (HF's BertSelfOutput / BertOutput)."""

    def __init__(self, c: BertConfig, d_in: int):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertResidual(c, c.hidden_size)

    def forward(self, x, tokens):
        return self.output(self.self(x, tokens), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = ACTIVATIONS[c.hidden_act]

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    """One Transformer encoder block: self-attention, then the feed-forward network."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertResidual(c, c.intermediate_size)

    def forward(self, x, tokens):
        x = self.attention(x, tokens)
        return self.output(self.intermediate(x), x)


class BertPooler(nn.Module):
    """dense + tanh over [CLS]; pre-trained for next-sentence prediction, SimCSE's MLP when trained."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, cls):
        return torch.tanh(self.dense(cls))


BertOutput = namedtuple("BertOutput", "last_hidden_state pooler_output hidden_states")  # embeddings, layers


class BertModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.encoder = nn.ModuleDict({"layer": layers})  # HF's BertEncoder: the layers, named encoder.layer.N
        self.pooler = BertPooler(config)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):  # BERT's initialisation: N(0, 0.02) weights, zero biases
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False):
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        tokens = Tokens(attention_mask, pack=self.training and input_ids.is_cpu)  # padding: never attended to
        x = tokens.rows(self.embeddings(input_ids, token_type_ids))  # (tokens, hidden)
        hidden_states = [x]
        for layer in self.encoder.layer:
            x = layer(x, tokens)
            hidden_states.append(x)
        last = tokens.grid(x)  # (batch, length, hidden)
        return BertOutput(last, self.pooler(last[:, 0]),
                          tuple(map(tokens.grid, hidden_states)) if output_hidden_states else None)

    def set_dropout(self, p, hidden=None, attention=None, embedding=None, layers="all"):
        """The dropout probabilities -- unsupervised SimCSE's augmentation -- set on the modules, so that they
        hold in whatever runs them (speed.py's FastDropout keeps a module's p). p: every kind, the knob of
        Table 3; or each kind its own: hidden (the two residual branches of each layer, BertResidual),
        attention (the attention probabilities), embedding (the embeddings' output, no layer's). layers:
        the encoder layers that drop, "all", "top:K" (the last K) or "bottom:K"; the others keep everything.
        config.json records hidden and attention, as transformers' BertConfig has them."""
        hidden, attention, embedding = (p if q is None else q for q in (hidden, attention, embedding))
        dropping = dropout_layers(layers, len(self.encoder.layer))
        self.embeddings.dropout.p = embedding
        for i, layer in enumerate(self.encoder.layer):
            layer.attention.self.dropout.p = attention if i in dropping else 0.0
            layer.attention.output.dropout.p = layer.output.dropout.p = hidden if i in dropping else 0.0
        self.config.hidden_dropout_prob, self.config.attention_probs_dropout_prob = hidden, attention

    @classmethod
    def from_pretrained(cls, name_or_dir):  # a folder or hub id in the Hugging Face layout (checkpoint.py)
        return checkpoint.load_model(cls, BertConfig, name_or_dir)

    def save_pretrained(self, folder):  # config.json + model.safetensors, as transformers writes them
        checkpoint.save_model(self, folder)


def dropout_layers(spec, n):
    """The indices of the layers that drop out, of n: spec "all", "top:K" or "bottom:K" (1 <= K <= n)."""
    kind, _, k = spec.partition(":")
    if spec == "all":
        return range(n)
    if kind in ("top", "bottom") and k.isdigit() and 1 <= int(k) <= n:
        return range(n - int(k), n) if kind == "top" else range(int(k))
    raise ValueError(f"{spec}: expected all, top:K or bottom:K with K from 1 to the model's {n} layers")
