"""The sentence-transformers files beside a Hugging Face checkpoint, so that `SentenceTransformer(path)`
builds the checkpoint's own embedding, and the whole checkpoint train.py keeps in best/."""
import json
import os
from dataclasses import asdict
from pathlib import Path

from formats.checkpoint import model_files, safetensors_bytes
from formats.files import write_files


def save_sentence_transformers(model, folder, pooler, max_seq_length=128):  # (the files below)
    write_files(sentence_transformers_files(model, pooler, folder, max_seq_length))


def sentence_transformers_files(model, pooler, folder, max_seq_length=128):
    """Next to a Hugging Face checkpoint, the files with which sentence-transformers builds *this* embedding.

    Without them it silently builds mean pooling, which is not SimCSE's [CLS] embedding. cls_before_pooler
    is CLS pooling; cls adds the MLP (BERT's pooler: dense + tanh) as a Dense module; avg is mean pooling.
    avg_top2 and avg_first_last have no sentence-transformers equivalent: no modules.json is written, and
    the folder's README says so. The files are written in the layout of sentence-transformers 2-5, which
    later versions read too."""
    files = {}
    write = lambda name, content: files.update({os.path.join(folder, name): content if isinstance(
        content, (str, bytes)) else json.dumps(content, indent=2)})

    readme = (f"# SimCSE sentence encoder\n\nA BERT checkpoint in the Hugging Face layout trained with "
              f"SimCSE (https://github.com/princeton-nlp/SimCSE). Its sentence embedding is the `{pooler}` "
              f"pooler.\n\n"
              f"- this project: `from tool import SimCSE; SimCSE(path)` or `python eval_sts.py --model path "
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


def checkpoint_files(model, tokenizer, cfg, folder):
    """{path: content} of the checkpoint in folder that train.py keeps (best/) of a run with TrainConfig cfg:
    the tokenizer's files, the sentence-transformers files of its embedding, train_config.json, then
    config.json and model.safetensors, last."""
    files = {os.path.join(folder, Path(p).name): Path(p).read_bytes() for p in tokenizer.files}  # as copied
    files.update(sentence_transformers_files(model, cfg.embedding, folder))
    files[os.path.join(folder, "train_config.json")] = json.dumps(asdict(cfg), indent=2)
    return {**files, **model_files(model, folder)}
