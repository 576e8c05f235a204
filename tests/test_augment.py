"""Table 1's text augmentations (augment.py): each one's exact behaviour, its draws, its checks, and the one
line of train.py that applies them; --similarity dot (Table D.1) against a loop over eq. 1."""
from types import SimpleNamespace

import pytest
import torch

import ablate
from extras import augment
from infra import config
import train
from extras.augment import MaskedLMFill
from bert import BertModel
from formats.tokenizer import load_tokenizer

WORDS = [f"w{i}" for i in range(10)]


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("k, kept", [(0.1, 9), (0.2, 8), (0.3, 7), (0.5, 5), (0.95, 1)])
def test_crop_keeps_one_contiguous_span_of_the_right_length(k, kept):
    starts = set()
    for seed in range(100):
        out = augment.crop(WORDS, k, g(seed))
        assert len(out) == kept and out == WORDS[WORDS.index(out[0]):WORDS.index(out[0]) + kept]
        starts.add(WORDS.index(out[0]))
    assert len(starts) == len(WORDS) - kept + 1  # every start drawn


@pytest.mark.parametrize("k, deleted", [(0.1, 1), (0.2, 2), (0.3, 3), (0.25, 3), (0.99, 9)])
def test_word_deletion_deletes_the_rounded_count_and_keeps_the_order(k, deleted):
    for seed in range(10):
        out = augment.word_deletion(WORDS, k, g(seed))
        assert len(out) == len(WORDS) - deleted
        assert out == [w for w in WORDS if w in out]  # a subsequence: the order kept


def test_delete_one_word():
    for seed in range(10):
        out = augment.delete_one_word(WORDS, g(seed))
        assert len(out) == 9 and out == [w for w in WORDS if w in out]


@pytest.mark.parametrize("spec", ["crop:0.1", "crop:0.9", "word_deletion:0.3", "word_deletion:0.9",
                                  "delete_one_word"])
def test_a_one_word_sentence_is_never_emptied(spec):
    for seed in range(5):
        assert augment.augment(["alone", "two words"], spec, g(seed))[0] == "alone"
    assert augment.augment(["  "], spec, g())[0] == "  "  # nothing to augment: as it was


def test_synonym_replaces_one_word_with_a_synonym():
    table = {"big": ["large", "huge"], "dog": ["canine"]}
    lookup = lambda w: table.get(w, [])
    seen = set()
    for seed in range(20):
        out = augment.augment(["the big dog barks"], "synonym", g(seed), synonyms=lookup)[0].split()
        changed = [(a, b) for a, b in zip("the big dog barks".split(), out) if a != b]
        assert len(out) == 4 and len(changed) == 1 and changed[0][1] in table[changed[0][0]]
        seen.add(changed[0])
    assert len(seen) == 3  # both words with synonyms, both synonyms of "big"
    assert augment.augment(["no synonyms here"], "synonym", g(), synonyms=lookup) == ["no synonyms here"]


def cfg(spec="word_deletion:0.3", views=2, seed=7):
    return SimpleNamespace(augment=spec, augment_views=views, seed=seed)


SENTENCES = [" ".join(f"s{j}w{i}" for i in range(10)) for j in range(6)]


def views(batch, c, rank, step, fill=None):
    """augment_batch with the step's seeds of each view, as train.update draws them (train.step_seed)."""
    seeds = [train.step_seed(c.seed, rank, step, train.AUGMENTATION + v) for v in (0, 1)]
    return augment.augment_batch(batch, c, seeds, fill)


def test_draws_are_a_function_of_seed_process_step_and_view():
    batch = SENTENCES + SENTENCES  # two views of six sentences, as train.py builds them
    out = views(batch, cfg(), 0, 3)
    assert out == views(batch, cfg(), 0, 3)  # --resume: the same sentences
    assert out[:6] != out[6:]  # the two views differ
    for other in (views(batch, cfg(), 0, 4),
                  views(batch, cfg(), 1, 3),
                  views(batch, cfg(seed=8), 0, 3)):
        assert other != out
    assert all(len(s.split()) == 7 for s in out)
    one_view = views(batch, cfg(views=1), 0, 3)  # the anchor is the sentence
    assert one_view[:6] == SENTENCES and one_view[6:] == out[6:]


@pytest.mark.parametrize("argv, message", [
    (["--augment", "crop"], "crop takes a fraction"),
    (["--augment", "crop:1.5"], "not a number in (0, 1)"),
    (["--augment", "delete_one_word:0.1"], "takes no fraction"),
    (["--augment", "shuffle:0.1"], "expected one of crop:K"),
    (["--augment", "mlm:0.15"], "the packaged all-MiniLM-L6-v2 has none"),
    (["--augment", "crop:0.1", "--preset", "quick-sup"], "needs a .txt training file"),
    (["--augment", "crop:0.1", "--fixed-mask"], "--fixed-mask encodes the first view only"),
    (["--augment-views", "1"], "it needs --augment"),
])
def test_bad_settings_are_one_line_errors(argv, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        config.check(config.parse_args(argv)[0])
    assert "\n" not in str(error.value)


def test_synonym_without_wordnet_says_what_it_needs():
    try:
        from nltk.corpus import wordnet
        wordnet.ensure_loaded()
        pytest.skip("WordNet is installed here")
    except (ImportError, LookupError):
        assert augment.unavailable("synonym") == augment.SYNONYM_NEEDS
        with pytest.raises(ValueError, match="pip install nltk"):
            augment.check("synonym")


def test_augment_is_recorded_only_when_set():
    plain, _ = config.parse_args([])
    assert not {"augment", "augment_views", "similarity"} & set(config.experiment(plain))  # old runs resume
    on, _ = config.parse_args(["--augment", "crop:0.1", "--augment-views", "1", "--similarity", "dot"])
    assert {k: config.experiment(on)[k] for k in ("augment", "augment_views", "similarity")} == {
        "augment": "crop:0.1", "augment_views": 1, "similarity": "dot"}


@pytest.mark.parametrize("spec", ["crop:0.5", "mlm:0.3"])
def test_train_applies_the_augmentation_to_each_step(spec, tiny_checkpoint, tiny_pretraining, data_root,
                                                     tmp_path, monkeypatch):
    seen = []
    real = train.augment_batch
    monkeypatch.setattr(train, "augment_batch", lambda s, c, seeds, fill: seen.append(
        (s, fill, real(s, c, seeds, fill))) or seen[-1][2])
    model = tiny_pretraining if spec.startswith("mlm") else tiny_checkpoint
    run, _ = config.parse_args(["--model", model, "--data-dir", str(data_root), "--max-steps", "1",
                                "--batch-size", "4", "--eval-steps", "1", "--augment", spec,
                                "--output-dir", str(tmp_path / "run")])
    train.train(run, progress=False, test=False)
    [(before, fill, after)] = seen
    assert before[:4] == before[4:] and after == views(before, run, 0, 1, fill) and after != before
    if spec == "crop:0.5":
        assert fill is None
        assert [len(a.split()) for a in after] == [max(1, int(len(b.split()) / 2 + 0.5)) for b in before]
    else:  # a frozen copy of the starting checkpoint, whatever training did to the model
        start = BertModel.from_pretrained(model).state_dict()
        assert all(torch.equal(v, start[k]) for k, v in fill.model.state_dict().items())


# --- MLM k%: the checkpoint's own masked-LM predictions --------------------------------------------------

@pytest.fixture(scope="module")
def tiny_pretraining(tiny_checkpoint, tmp_path_factory):
    """The tiny BERT with a pre-training head (transformers' BertForPreTraining, as BERT checkpoints on the
    hub), and MiniLM's tokenizer."""
    import transformers
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pretraining")
    model = transformers.BertForPreTraining(transformers.BertConfig.from_pretrained(tiny_checkpoint))
    torch.nn.init.normal_(model.cls.predictions.bias, std=0.05)  # not zero, yet not all that decides
    model.save_pretrained(folder)
    load_tokenizer(tiny_checkpoint).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def fill(tiny_pretraining):
    return MaskedLMFill(tiny_pretraining)


MLM_SENTENCES = ["A man is playing a guitar.", "Two dogs run through a field of unbelievably tall grass.",
                 "Hello!", "Stocks fell sharply on Tuesday, after the central bank raised interest rates.",
                 ""]


def transformers_fill(folder, sentences, chosen):
    """The reference: transformers' tokenizer and BertForMaskedLM, every token of the chosen words masked, the
    argmax over the vocabulary but the special tokens, decoded by transformers."""
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.BertForMaskedLM.from_pretrained(folder).eval()
    out = []
    for words, picks in zip(sentences, chosen):
        text = " ".join(words)
        encoding = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        ids = encoding["input_ids"].clone()
        starts = [len(" ".join(words[:j] + [""])) for j in range(len(words))]  # of each word in text
        token_word = [None if b == e else max(j for j, s in enumerate(starts) if s <= b)
                      for b, e in encoding["offset_mapping"][0].tolist()]
        ids[0, [t for t, w in enumerate(token_word) if w in picks]] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=encoding["attention_mask"]).logits[0]
        logits[:, tokenizer.all_special_ids] = -float("inf")
        predicted = logits.argmax(-1)
        out.append([tokenizer.decode([int(predicted[t]) for t, w in enumerate(token_word) if w == j]).strip()
                    if j in picks else word for j, word in enumerate(words)])
    return out


def test_mlm_replaces_the_chosen_words_with_the_masked_lm_argmax(fill, tiny_pretraining):
    split = [s.split() for s in MLM_SENTENCES]
    for seed in range(3):
        chosen = [augment.chosen_words(len(words), 0.3, g(seed)) for words in split]
        assert [len(c) for c in chosen] == [2, 3, 0, 4, 0]  # round(0.3 n), never all: word deletion's rule
        out = fill(split, chosen)
        assert out == transformers_fill(tiny_pretraining, split, chosen)
        for words, replaced, picks in zip(split, out, chosen):
            assert len(replaced) == len(words)
            assert {j for j, (a, b) in enumerate(zip(words, replaced)) if a != b} == picks  # the rest kept
    # the sentences as augment gives them: the same draws from the generator, one after the other
    generator, expected = g(5), []
    chosen = [augment.chosen_words(len(words), 0.3, generator) for words in split]
    expected = [" ".join(words) if words else s for words, s in zip(fill(split, chosen), MLM_SENTENCES)]
    assert augment.augment(MLM_SENTENCES, "mlm:0.3", g(5), fill) == expected


def test_mlm_draws_are_a_function_of_seed_step_and_view(fill):
    words = "the cat sat on a mat near an old door in the house by the sea".split()
    batch = [" ".join(words[j:j + 10]) for j in range(6)] * 2  # one token a word: one a prediction
    out = views(batch, cfg("mlm:0.3"), 0, 3, fill)
    assert out == views(batch, cfg("mlm:0.3"), 0, 3, fill)  # --resume
    assert out[:6] != out[6:] and out != views(batch, cfg("mlm:0.3"), 0, 4, fill)
    assert all(sum(a != b for a, b in zip(s.split(), o.split())) == 3 for s, o in zip(batch, out))


def test_mlm_needs_a_checkpoint_with_its_head(tiny_checkpoint, tiny_pretraining):
    """The packaged MiniLM and a bare BertModel have no head: one line, before any work; with a head the row
    runs, in train.py's check and in ablate's Table 1."""
    for model in (None, tiny_checkpoint):
        reason = augment.unavailable("mlm:0.15", model)
        assert "\n" not in reason and "needs a checkpoint saved with its pre-training MLM head" in reason
        with pytest.raises(ValueError, match="bert-base-uncased"):
            config.check(config.parse_args(["--augment", "mlm:0.15"] + (["--model", model] * bool(model)))[0])
        assert mlm_row(model) == reason
    config.check(config.parse_args(["--augment", "mlm:0.15", "--model", tiny_pretraining])[0])
    assert mlm_row(tiny_pretraining) is None


def mlm_row(model):  # ablate.py table1's why-not of its MLM row
    return next(why for _, _, row, _, why in ablate.rows("table1", model) if row.label == "MLM 15%")
