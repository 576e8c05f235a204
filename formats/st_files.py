"""The sentence-transformers files beside a Hugging Face checkpoint (train.py writes them into best/), so
that `SentenceTransformer(path)` builds the checkpoint's own embedding."""
import json
import os

from formats.checkpoint import write_safetensors


def save_sentence_transformers(model, folder, pooler, max_seq_length=128):
    """Next to a Hugging Face checkpoint, the files with which sentence-transformers builds *this* embedding.

    Without them it silently builds mean pooling, which is not SimCSE's [CLS] embedding. cls_before_pooler
    is CLS pooling; cls adds the MLP (BERT's pooler: dense + tanh) as a Dense module; avg is mean pooling.
    avg_top2 and avg_first_last have no sentence-transformers equivalent: no modules.json is written, and
    the folder's README says so. The files are written in the layout of sentence-transformers 2-5, which
    later versions read too."""
    def write(name, content):
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(content if isinstance(content, str) else json.dumps(content, indent=2))

    readme = (f"# SimCSE sentence encoder\n\nA BERT checkpoint in the Hugging Face layout trained with "
              f"SimCSE (https://github.com/princeton-nlp/SimCSE). Its sentence embedding is the `{pooler}` "
              f"pooler.\n\n"
              f"- this project: `from tool import SimCSE; SimCSE(path)` or `python eval_sts.py --model path "
              f"--pooler {pooler}`\n")
    if pooler in ("avg_top2", "avg_first_last"):
        write("README.md", readme + f"- sentence-transformers has no `{pooler}` pooling, so this folder has "
                                    "no modules.json: `SentenceTransformer(path)` would build mean "
                                    "pooling, a different embedding.\n")
        return
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
        write_safetensors({"linear.weight": model.pooler.dense.weight,
                           "linear.bias": model.pooler.dense.bias},
                          os.path.join(folder, "2_Dense", "model.safetensors"))
    write("modules.json", modules)
    write("sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    write("config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
    write("README.md", readme + "- sentence-transformers: `SentenceTransformer(path)` (modules.json builds "
                                "this embedding)\n")
