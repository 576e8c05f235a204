"""Text augmentations instead of dropout: Table 1 of the paper (section 3), `train.py --augment SPEC`.

    crop:K            crop K (a fraction): keep one contiguous span of round((1 - K) n) of the n words
    word_deletion:K   word deletion K: delete round(K n) of the n words (never all of them)
    delete_one_word   delete one word at random (a one-word sentence is kept)
    synonym           replace one random word with a WordNet synonym (the paper used nlpaug; we use nltk's
                      WordNet where it is installed, and refuse to run otherwise)
    mlm:K             replace round(K n) of the n words (never all of them) with the checkpoint's own
                      masked-LM predictions (MaskedLMFill; needs a checkpoint with its pre-training head)

The paper keeps the standard 10% dropout under every augmentation (Table 1's "w/o dropout" row is
`--dropout 0`). It does not say whether one view or both are augmented; here, by default, each of the two
views gets its own augmentation of the sentence (`--augment-views 2`, recorded in run.json), as the two views
get their own dropout masks; `--augment-views 1` augments the second view only (the anchor is the sentence).
Words are whitespace-separated and joined back with single spaces; "round" is round-half-up.

Every draw comes from a generator seeded from (seed, process, step, view), so --resume sees the same
sentences as an uninterrupted run (train.py's dropout masks: (seed, process, step); mlm.py: ..., 1).
"""
from bisect import bisect_right

import torch

from bert import BertConfig, BertModel
from formats.checkpoint import checkpoint_file, default_model, read_config
from extras.mlm import head_weights, load_head
from formats.tokenizer import load_tokenizer

NAMES = ("crop", "word_deletion", "delete_one_word", "synonym", "mlm")
TAKES_FRACTION = ("crop", "word_deletion", "mlm")
SYNONYM_NEEDS = "needs nltk's WordNet (pip install nltk; python -m nltk.downloader wordnet)"
MLM_NEEDS = ("needs a checkpoint saved with its pre-training MLM head (cls.predictions.* or lm_head.*), e.g. "
             "--model bert-base-uncased; {} has none")


def parse(spec):
    """("crop", 0.1) from "crop:0.1"; (name, None) for the augmentations without a fraction."""
    name, _, k = spec.partition(":")
    return name, (float(k) if k else None)


def check(spec, model=None):
    """A one-line ValueError for a spec that is malformed or cannot run on this machine (with this model)."""
    name, _, k = spec.partition(":")
    if name not in NAMES:
        raise ValueError(f"--augment {spec}: expected one of crop:K, word_deletion:K, delete_one_word, "
                         f"synonym, mlm:K (K a fraction in (0, 1))")
    if (name in TAKES_FRACTION) != bool(k):
        raise ValueError(f"--augment {spec}: {name} " + ("takes a fraction, e.g. crop:0.1"
                                                         if name in TAKES_FRACTION else "takes no fraction"))
    if k and not (k.replace(".", "", 1).isdigit() and 0 < float(k) < 1):
        raise ValueError(f"--augment {spec}: the fraction {k} is not a number in (0, 1)")
    reason = unavailable(spec, model)
    if reason:
        raise ValueError(f"--augment {spec}: {reason}")


def unavailable(spec, model=None):
    """Why an augmentation cannot run here on `model` (None: the packaged one), the one line a table prints
    for the row; or None."""
    name, _ = parse(spec)
    if name == "mlm":
        name_or_dir = model or default_model()
        model_type = read_config(BertConfig, checkpoint_file(name_or_dir, "config.json")).model_type
        if "dense.weight" not in head_weights(name_or_dir, model_type):  # a head has its transform
            return MLM_NEEDS.format(model or "the packaged all-MiniLM-L6-v2")
    if name == "synonym":
        try:
            from nltk.corpus import wordnet
            wordnet.ensure_loaded()  # LookupError without the corpus; nothing is downloaded
        except (ImportError, LookupError):
            return SYNONYM_NEEDS
    return None


def rounded(x):
    return int(x + 0.5)  # round half up (Python's round() rounds 2.5 to 2)


def crop(words, k, g):
    keep = max(1, rounded((1 - k) * len(words)))
    start = int(torch.randint(len(words) - keep + 1, (1,), generator=g))
    return words[start:start + keep]


def chosen_words(n, k, g):
    """The positions of round(K n) of n words (never all of them), drawn at random."""
    return set(torch.randperm(n, generator=g)[:min(rounded(k * n), n - 1)].tolist())


def word_deletion(words, k, g):
    dropped = chosen_words(len(words), k, g)
    return [w for i, w in enumerate(words) if i not in dropped]


def delete_one_word(words, g):
    if len(words) == 1:
        return words
    i = int(torch.randint(len(words), (1,), generator=g))
    return words[:i] + words[i + 1:]


def wordnet_synonyms(word):
    from nltk.corpus import wordnet
    return sorted({lemma.name().replace("_", " ") for synset in wordnet.synsets(word)
                   for lemma in synset.lemmas()} - {word})


def synonym(words, g, synonyms=wordnet_synonyms):
    """The first word, in a random order, that has a synonym is replaced by one of them, drawn at random."""
    for i in torch.randperm(len(words), generator=g).tolist():
        found = synonyms(words[i])
        if found:
            pick = int(torch.randint(len(found), (1,), generator=g))
            return words[:i] + [found[pick]] + words[i + 1:]
    return words


class MaskedLMFill:
    """MLM k%'s predictions: the starting checkpoint and its pre-training MLM head (mlm.load_head), a frozen
    copy loaded once (train.py), in eval mode (no dropout). The paper made its MLM-augmented sentences with
    a fixed pre-trained BERT-base; so do we, rather than with the weights being trained (which would also
    need an MLM head kept in step with them). All sentences of a view go through it in one pass."""

    def __init__(self, name_or_dir, device="cpu"):
        self.model = BertModel.from_pretrained(name_or_dir).to(device)  # loaded in eval mode
        self.head = load_head(self.model, name_or_dir).to(device).eval()
        self.tokenizer, self.device = load_tokenizer(name_or_dir), device

    @torch.no_grad()
    def __call__(self, sentences, chosen):
        """Each sentence (a list of words) with its chosen words (sets of positions) replaced by the decoded
        argmax predictions at their tokens. Whole words: every token of a chosen word is masked (a word cut
        off at the model's maximum length is kept as it is); special tokens are never predicted."""
        text = [" ".join(words) for words in sentences]
        batch = self.tokenizer(text)  # padded to the longest
        encodings = self.tokenizer.tok.encode_batch(text)  # the same tokens, with their character offsets
        chosen_tokens, where = torch.zeros_like(batch["input_ids"], dtype=torch.bool), []  # where: (i, word)
        for i, (words, e) in enumerate(zip(sentences, encodings)):
            starts = [sum(len(w) + 1 for w in words[:j]) for j in range(len(words))]  # of each word in text
            for t, ((_, end), special) in enumerate(zip(e.offsets, e.special_tokens_mask)):
                word = bisect_right(starts, end - 1) - 1  # the word of its last character (BPE: "Ġman")
                if not special and word in chosen[i]:
                    chosen_tokens[i, t] = True
                    where.append((i, word))
        out = [list(words) for words in sentences]
        if not where:
            return out
        batch = {k: v.to(self.device) for k, v in batch.items()}
        masked = batch["input_ids"].masked_fill(chosen_tokens.to(self.device), self.tokenizer.mask_id)
        hidden = self.model(masked, batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        logits = self.head(hidden[chosen_tokens.to(self.device)])  # row by row, in the order of `where`
        logits[:, self.tokenizer.special_ids] = -float("inf")
        pieces = {}
        for p, at in zip(logits.argmax(-1).tolist(), where):
            pieces.setdefault(at, []).append(p)  # each chosen word's predicted tokens, in order
        for (i, word), ids in pieces.items():
            out[i][word] = self.tokenizer.tok.decode(ids).strip()  # WordPiece's ## joined, or BPE's bytes
        return out


def augment(sentences, spec, g, fill=None, **kw):
    """Each sentence of one view augmented, in order, with draws from the generator g (mlm: predictions from
    fill, a MaskedLMFill)."""
    name, k = parse(spec)
    if name == "mlm":
        split = [s.split() for s in sentences]
        out = fill(split, [chosen_words(len(words), k, g) for words in split])
        return [" ".join(words) if words else s for words, s in zip(out, sentences)]
    one = {"crop": lambda w: crop(w, k, g), "word_deletion": lambda w: word_deletion(w, k, g),
           "delete_one_word": lambda w: delete_one_word(w, g), "synonym": lambda w: synonym(w, g, **kw)}[name]
    return [" ".join(one(s.split())) if s.split() else s for s in sentences]


def augment_batch(sentences, cfg, seeds, fill=None):
    """A step's sentences, view by view (two blocks of the same sentences, train.py), with cfg.augment applied
    to the last cfg.augment_views views, view v with draws seeded by seeds[v] (the step's streams,
    data.step_seed; mlm: predictions from fill, a MaskedLMFill)."""
    n = len(sentences) // 2
    return [s for view in (0, 1) for s in (
        augment(sentences[view * n:(view + 1) * n], cfg.augment, torch.Generator().manual_seed(seeds[view]),
                fill)
        if view >= 2 - cfg.augment_views else sentences[view * n:(view + 1) * n])]
