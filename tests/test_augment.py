"""Table 1's text augmentations (augment.py): each one's exact behaviour, its draws, its checks, and the one
line of train.py that applies them; --similarity dot (Table D.1) against a loop over eq. 1."""
import math
from types import SimpleNamespace

import pytest
import torch

import augment
import config
import train
from simcse import contrastive_loss

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


def test_draws_are_a_function_of_seed_process_step_and_view():
    batch = SENTENCES + SENTENCES  # two views of six sentences, as train.py builds them
    out = augment.augment_batch(batch, cfg(), rank=0, step=3)
    assert out == augment.augment_batch(batch, cfg(), rank=0, step=3)  # --resume: the same sentences
    assert out[:6] != out[6:]  # the two views differ
    for other in (augment.augment_batch(batch, cfg(), rank=0, step=4),
                  augment.augment_batch(batch, cfg(), rank=1, step=3),
                  augment.augment_batch(batch, cfg(seed=8), rank=0, step=3)):
        assert other != out
    assert all(len(s.split()) == 7 for s in out)
    one_view = augment.augment_batch(batch, cfg(views=1), rank=0, step=3)  # the anchor is the sentence
    assert one_view[:6] == SENTENCES and one_view[6:] == out[6:]


@pytest.mark.parametrize("argv, message", [
    (["--augment", "crop"], "crop takes a fraction"),
    (["--augment", "crop:1.5"], "not a number in (0, 1)"),
    (["--augment", "delete_one_word:0.1"], "takes no fraction"),
    (["--augment", "shuffle:0.1"], "expected one of crop:K"),
    (["--augment", "mlm:0.15"], "needs an MLM head in the checkpoint"),
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


def test_train_applies_the_augmentation_to_each_step(tiny_checkpoint, data_root, tmp_path, monkeypatch):
    seen = []
    real = train.augment_batch
    monkeypatch.setattr(train, "augment_batch", lambda s, c, r, step: seen.append((s, real(s, c, r, step)))
                        or seen[-1][1])
    run, _ = config.parse_args(["--model", tiny_checkpoint, "--data-dir", str(data_root), "--max-steps", "1",
                                "--batch-size", "4", "--eval-steps", "1", "--augment", "crop:0.5",
                                "--output-dir", str(tmp_path / "run")])
    train.train(run, progress=False, test=False)
    [(before, after)] = seen
    assert before[:4] == before[4:] and after == real(before, run, 0, 1)
    assert [len(a.split()) for a in after] == [max(1, int(len(b.split()) / 2 + 0.5)) for b in before]


# --- Table D.1: the dot product instead of the cosine ---------------------------------------------------

@pytest.mark.parametrize("views", [2, 3])
def test_dot_similarity_is_eq_1_without_normalisation(views):
    torch.manual_seed(3)
    z, tau, weight = torch.randn(views, 5, 8) * 0.3, 0.5, 0.7
    expected = 0.0
    for i in range(5):
        logit = lambda u, v: float(torch.dot(u, v)) / tau
        numerator = math.exp(logit(z[0, i], z[1, i]))
        denominator = sum(math.exp(logit(z[0, i], z[v, j])) * (math.exp(weight) if v == 2 and j == i else 1)
                          for v in range(1, views) for j in range(5))
        expected += -math.log(numerator / denominator) / 5
    assert contrastive_loss(z, tau, weight, "dot").item() == pytest.approx(expected, rel=1e-5)
    cosine = contrastive_loss(z, tau, weight).item()
    assert contrastive_loss(z, tau, weight, "dot").item() != pytest.approx(cosine)
