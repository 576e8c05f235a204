"""simcse.py against the paper's formulas, written as loops: the file to show in class. It needs no data and
no checkpoint (a tiny random BERT is made here) and runs in seconds:  python -m pytest tests/test_simcse.py"""
import math

import pytest
import torch

import simcse
from bert import BertConfig, BertModel


def cos(u, v):
    return float(torch.dot(u, v) / (u.norm() * v.norm()))


def test_the_unsupervised_loss_is_eq_1():
    """l_i = -log e^{sim(h_i, h_i+)/tau} / sum_j e^{sim(h_i, h_j+)/tau}, averaged over the batch."""
    torch.manual_seed(0)
    h, h_pos, tau = torch.randn(6, 16), torch.randn(6, 16), 0.05
    expected = 0.0
    for i in range(6):
        numerator = math.exp(cos(h[i], h_pos[i]) / tau)
        denominator = sum(math.exp(cos(h[i], h_pos[j]) / tau) for j in range(6))
        expected += -math.log(numerator / denominator) / 6
    assert simcse.contrastive_loss(torch.stack([h, h_pos]), tau).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weight", [0.0, 1.5])
def test_the_supervised_loss_is_eq_5_with_the_hard_negative_weight(weight):
    """Every anchor's denominator also holds every hard negative h_j-; its own one weighted by alpha = e^w
    (Table 7's alpha, the authors' code's weight w added to that logit)."""
    torch.manual_seed(1)
    h, h_pos, h_neg, tau = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8), 0.05
    expected = 0.0
    for i in range(5):
        numerator = math.exp(cos(h[i], h_pos[i]) / tau)
        denominator = sum(math.exp(cos(h[i], h_pos[j]) / tau)
                          + math.exp(cos(h[i], h_neg[j]) / tau) * (math.exp(weight) if j == i else 1.0)
                          for j in range(5))
        expected += -math.log(numerator / denominator) / 5
    loss = simcse.contrastive_loss(torch.stack([h, h_pos, h_neg]), tau, weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("n_views", [2, 3])
def test_the_dot_product_is_eq_1_without_the_normalisation(n_views):
    """Table D.1's "dot product" row: sim(u, v) = u . v (with a hard negative's weight, eq. 5)."""
    torch.manual_seed(3)
    z, tau, weight = torch.randn(n_views, 5, 8) * 0.3, 0.5, 0.7
    expected = 0.0
    for i in range(5):
        logit = lambda u, v: float(torch.dot(u, v)) / tau
        denominator = sum(math.exp(logit(z[0, i], z[k, j])) * (math.exp(weight) if k == 2 and j == i else 1)
                          for k in range(1, n_views) for j in range(5))
        expected += -math.log(math.exp(logit(z[0, i], z[1, i])) / denominator) / 5
    loss = simcse.contrastive_loss(z, tau, weight, similarity="dot").item()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss != pytest.approx(simcse.contrastive_loss(z, tau, weight).item())  # not the cosine's


def test_the_loss_reads_a_similarity_matrix_whose_diagonal_holds_the_positives():
    torch.manual_seed(2)
    h = torch.randn(32, 64)
    logits, labels = simcse.logits(torch.stack([h, h]), temp=1.0)
    assert torch.equal(labels, torch.arange(32)) and torch.allclose(logits.diagonal(), torch.ones(32))
    assert simcse.contrastive_loss(torch.stack([h, h])).item() < 0.01  # the positive found: loss near 0
    assert simcse.contrastive_loss(torch.stack([h, torch.randn(32, 64)])).item() > 1.0  # near ln 32


@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer BERT and a padded batch of four 'sentences' of token ids."""
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64))
    ids = torch.randint(5, 100, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = mask[3, 4:] = 0  # two shorter sentences: padding
    return model, {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def two_views(model, batch, p, fixed_mask=False, pooler="cls_before_pooler"):
    """Each sentence twice in one batch, view by view, through the model in training mode (section 3)."""
    model.set_dropout(p)
    with torch.no_grad():
        return simcse.embed_views(model.train(), {k: torch.cat([v, v]) for k, v in batch.items()}, 2,
                                  pooler, fixed_mask)


def test_two_dropout_masks_make_two_views_of_one_sentence(tiny):
    model, batch = tiny
    z = two_views(model, batch, 0.1)
    assert z.shape == (2, 4, 32)
    similarity = torch.nn.functional.cosine_similarity(z[0], z[1])
    assert (similarity < 0.9999).all() and (similarity > 0.5).all()  # two noisy views of the same sentence


@pytest.mark.parametrize("p, fixed_mask", [(0.0, False), (0.1, True)])
def test_without_dropout_or_with_one_mask_the_views_are_one(p, fixed_mask, tiny):
    """Table 3's p = 0 and "Fixed 0.1": the positive is the anchor itself, found trivially."""
    model, batch = tiny
    z = two_views(model, batch, p, fixed_mask)
    assert torch.equal(z[0], z[1])


def test_the_poolers_read_the_sentence_embedding_off_bert(tiny):
    model, batch = tiny
    model.set_dropout(0.0)
    out = model.eval()(**batch, output_hidden_states=True)
    real = batch["attention_mask"].unsqueeze(-1).float()
    mean = lambda h: (h * real).sum(1) / real.sum(1)  # over the real tokens only
    h = out.hidden_states
    expected = {"cls": out.pooler_output, "cls_before_pooler": out.last_hidden_state[:, 0],
                "avg": mean(h[-1]), "avg_top2": mean((h[-1] + h[-2]) / 2),
                "avg_first_last": mean((h[1] + h[-1]) / 2)}  # h[1]: the first layer, not the embeddings
    for pooler in simcse.POOLERS:
        assert torch.allclose(simcse.pool(out, batch["attention_mask"], pooler), expected[pooler], atol=1e-6)
    assert simcse.embedding_pooler("cls", mlp_only_train=True) == "cls_before_pooler"  # MLP in training only


def test_alignment_and_uniformity_are_eq_2_and_3():
    """alignment: E ||f(x) - f(x+)||^2 over positive pairs; uniformity: log E e^{-2 ||f(x) - f(y)||^2} over
    all pairs of distinct sentences; both on unit vectors, lower is better (section 2)."""
    torch.manual_seed(4)
    x = torch.nn.functional.normalize(torch.randn(7, 5), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(7, 5), dim=-1)
    align = sum(float((x[i] - y[i]).norm() ** 2) for i in range(7)) / 7
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7)]
    uniform = math.log(sum(math.exp(-2 * float((x[i] - x[j]).norm() ** 2)) for i, j in pairs) / len(pairs))
    assert simcse.alignment(x, y) == pytest.approx(align, rel=1e-5)
    assert simcse.uniformity(x) == pytest.approx(uniform, rel=1e-5)
