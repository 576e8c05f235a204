"""BERT's WordPiece and RoBERTa's byte-level BPE tokenizers (the `tokenizers` library), returning padded
PyTorch tensors.

    tokenizer = load_tokenizer("bert-base-uncased")   # or "roberta-base", or a local checkpoint folder
    # {"input_ids", "attention_mask", "token_type_ids"}
    tokenizer(["A man is playing a guitar."], max_length=32)

BERT: [CLS] a man ... [SEP], lower-cased WordPiece pieces, [PAD] = 0. RoBERTa (GPT-2's byte-level BPE with
fairseq's ids): <s> A Ġman ... </s>, not lower-cased, a word's leading space part of its token, <pad> = 1.
"""
import json
import os
import shutil

import numpy as np
import torch

from formats.checkpoint import checkpoint_file

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json")
# The special tokens of each family (transformers' all_special_ids): never masked by MLM (mlm.py).
SPECIAL_TOKENS = {"bert": dict(cls="[CLS]", sep="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]"),
                  "roberta": dict(cls="<s>", sep="</s>", pad="<pad>", unk="<unk>", mask="<mask>")}


class Tokenizer:
    """A `tokenizers` tokenizer (BERT's or RoBERTa's) returning padded PyTorch tensors."""

    def __init__(self, tok, model_max_length=512, files=()):
        self.tok = tok
        self.model_max_length = model_max_length
        self.files = files  # the files it was loaded from, copied by save_pretrained
        roberta = tok.token_to_id("[PAD]") is None and tok.token_to_id("<pad>") is not None
        self.special = SPECIAL_TOKENS["roberta" if roberta else "bert"]
        self.pad_token = self.special["pad"]
        self.pad_id = tok.token_to_id(self.pad_token)
        self.mask_id = tok.token_to_id(self.special["mask"])  # None: this tokenizer cannot serve MLM
        self.special_ids = sorted(i for i in map(tok.token_to_id, self.special.values()) if i is not None)
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)  # len(tokenizer) in transformers
        tok.no_truncation()

    def __call__(self, sentences, max_length=None, pad_to_max_length=False):
        """Token ids of sentences, padded to the longest (or to max_length) and cut at max_length tokens."""
        max_length = min(max_length or self.model_max_length, self.model_max_length)
        self.tok.enable_truncation(max_length)
        self.tok.enable_padding(pad_id=self.pad_id, pad_token=self.pad_token,
                                length=max_length if pad_to_max_length else None)
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
    """tokenizer.json when the checkpoint has one, else vocab.json + merges.txt with RoBERTa's rules, else
    vocab.txt with BERT's WordPiece rules."""
    files = {f: checkpoint_file(name_or_dir, f, required=False) for f in TOKENIZER_FILES}
    config = {}
    if files["tokenizer_config.json"]:
        try:
            with open(files["tokenizer_config.json"], encoding="utf-8") as f:
                config = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{files['tokenizer_config.json']}: not valid JSON ({e})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{files['tokenizer_config.json']}: expected a JSON object")
    max_len = config.get("model_max_length", 512)
    # "infinite" in some configs
    max_len = 512 if not isinstance(max_len, int) or max_len > 1_000_000 else max_len
    source = files["tokenizer.json"] or (files["merges.txt"] and files["vocab.json"]) or files["vocab.txt"]
    if source is None:
        raise FileNotFoundError(f"{name_or_dir}: no tokenizer.json or vocab.txt (BERT), "
                                "nor vocab.json + merges.txt (RoBERTa)")
    try:  # the tokenizers library's errors name no file
        tok = build(files, config)
    except Exception as e:
        first_line = str(e).splitlines()[0][:150] if str(e) else type(e).__name__
        raise ValueError(f"{source}: cannot be read as a tokenizer ({first_line})") from None
    special = SPECIAL_TOKENS["roberta" if tok.token_to_id("<pad>") is not None else "bert"]
    missing = [t for k, t in special.items() if k != "mask" and tok.token_to_id(t) is None]
    if missing or tok.get_vocab_size() <= len(special):
        raise ValueError(f"{source}: not a usable vocabulary ({tok.get_vocab_size()} tokens; "
                         f"missing {', '.join(missing) or 'words'}): empty or damaged?")
    return Tokenizer(tok, max_len, files=[p for p in files.values() if p])


def build(files, config):
    """The `tokenizers` tokenizer of a checkpoint's files."""
    from tokenizers import Tokenizer as HFTokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE, WordPiece
    if files["tokenizer.json"]:
        tok = HFTokenizer.from_file(files["tokenizer.json"])
    elif files["vocab.json"] and files["merges.txt"]:  # RoBERTa (transformers' RobertaConverter)
        tok = HFTokenizer(BPE.from_file(files["vocab.json"], files["merges.txt"]))
        prefix_space = config.get("add_prefix_space", False)  # False: a sentence's first word has no space
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)  # bytes, never [UNK]
        tok.post_processor = processors.RobertaProcessing(  # <s> A </s>, and pairs <s> A </s></s> B </s>
            ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), add_prefix_space=prefix_space)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    elif files["vocab.txt"]:
        tok = HFTokenizer(WordPiece.from_file(files["vocab.txt"], unk_token="[UNK]"))
        lower = config.get("do_lower_case", True)
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
            strip_accents=config.get("strip_accents"), lowercase=lower)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
        tok.decoder = decoders.WordPiece()
        tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return tok
