"""Text augmentations instead of dropout: Table 1 of the paper (section 3), `train.py --augment SPEC`.

    crop:K            crop K (a fraction): keep one contiguous span of round((1 - K) n) of the n words
    word_deletion:K   word deletion K: delete round(K n) of the n words (never all of them)
    delete_one_word   delete one word at random (a one-word sentence is kept)
    synonym           replace one random word with a WordNet synonym (the paper used nlpaug; we use nltk's
                      WordNet where it is installed, and refuse to run otherwise)
    mlm:K             replace K of the words with the encoder's own masked-LM predictions: not written yet

The paper keeps the standard 10% dropout under every augmentation (Table 1's "w/o dropout" row is
`--dropout 0`). It does not say whether one view or both are augmented; here, by default, each of the two
views gets its own augmentation of the sentence (`--augment-views 2`, recorded in run.json), as the two views
get their own dropout masks; `--augment-views 1` augments the second view only (the anchor is the sentence).
Words are whitespace-separated and joined back with single spaces; "round" is round-half-up.

Every draw comes from a generator seeded from (seed, process, step, view), so --resume sees the same
sentences as an uninterrupted run (train.py's dropout masks: (seed, process, step); mlm.py: ..., 1).
"""
import torch

NAMES = ("crop", "word_deletion", "delete_one_word", "synonym", "mlm")
TAKES_FRACTION = ("crop", "word_deletion", "mlm")
SYNONYM_NEEDS = "needs nltk's WordNet (pip install nltk; python -m nltk.downloader wordnet)"
MLM_NEEDS = ("needs an MLM head in the checkpoint (cls.predictions.*: bert-base-uncased has one, the "
             "packaged MiniLM none) and augment.py's MLM replacement, which is not written yet")


def parse(spec):
    """("crop", 0.1) from "crop:0.1"; (name, None) for the augmentations without a fraction."""
    name, _, k = spec.partition(":")
    return name, (float(k) if k else None)


def check(spec):
    """A one-line ValueError for a spec that is malformed or cannot run on this machine."""
    name, _, k = spec.partition(":")
    if name not in NAMES:
        raise ValueError(f"--augment {spec}: expected one of crop:K, word_deletion:K, delete_one_word, "
                         f"synonym, mlm:K (K a fraction in (0, 1))")
    if (name in TAKES_FRACTION) != bool(k):
        raise ValueError(f"--augment {spec}: {name} " + ("takes a fraction, e.g. crop:0.1"
                                                         if name in TAKES_FRACTION else "takes no fraction"))
    if k and not (k.replace(".", "", 1).isdigit() and 0 < float(k) < 1):
        raise ValueError(f"--augment {spec}: the fraction {k} is not a number in (0, 1)")
    reason = unavailable(spec)
    if reason:
        raise ValueError(f"--augment {spec}: {reason}")


def unavailable(spec):
    """Why an augmentation cannot run here (the one line a table prints for the row), or None."""
    name, _ = parse(spec)
    if name == "mlm":
        return MLM_NEEDS
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


def word_deletion(words, k, g):
    drop = min(rounded(k * len(words)), len(words) - 1)  # never all of them
    dropped = set(torch.randperm(len(words), generator=g)[:drop].tolist())
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


def augment(sentences, spec, g, **kw):
    """Each sentence of one view augmented, in order, with draws from the generator g."""
    name, k = parse(spec)
    one = {"crop": lambda w: crop(w, k, g), "word_deletion": lambda w: word_deletion(w, k, g),
           "delete_one_word": lambda w: delete_one_word(w, g), "synonym": lambda w: synonym(w, g, **kw)}[name]
    return [" ".join(one(s.split())) if s.split() else s for s in sentences]


def generator(seed, rank, step, view):
    # ints only: Python's hash of a tuple of ints is the same in every process and run (str hashes are not)
    return torch.Generator().manual_seed(hash((seed, rank, step, 2 + view)))


def augment_batch(sentences, cfg, rank, step):
    """A step's sentences, view by view (two blocks of the same sentences, train.py), with cfg.augment applied
    to the last cfg.augment_views views, each view with its own draws."""
    n = len(sentences) // 2
    return [s for view in (0, 1) for s in (
        augment(sentences[view * n:(view + 1) * n], cfg.augment, generator(cfg.seed, rank, step, view))
        if view >= 2 - cfg.augment_views else sentences[view * n:(view + 1) * n])]
