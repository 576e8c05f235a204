"""SimCSE (Gao, Yao & Chen, EMNLP 2021 = arXiv 2104.08821v4, the version cited throughout), the method in
the paper's order: the poolers (a sentence embedding read off BERT), two dropout views of a batch (section
3), the contrastive objective (eq. 1; eq. 5 with hard negatives, section 4) and a batch's loss in one call,
alignment and uniformity (section 2). train.py puts them to work; tool.py's SimCSE uses a trained model."""
import torch
import torch.nn.functional as F

# --- Sentence embeddings: the poolers, as the authors' evaluation.py defines them -----------------------

POOLERS = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last")


def pool(output, attention_mask, pooler):
    """A sentence embedding from a BertOutput (run with output_hidden_states for the avg_* poolers).

    cls: [CLS] through dense + tanh: in a SimCSE checkpoint, the MLP trained with the loss (section 3).
    cls_before_pooler: the [CLS] vector itself (unsupervised SimCSE's test-time embedding).
    avg, avg_top2, avg_first_last: the mean over real tokens of the last layer, of the last two layers, of
    the first Transformer layer (hidden_states[1], not the embeddings) and the last."""
    if pooler == "cls":
        return output.pooler_output
    if pooler == "cls_before_pooler":
        return output.last_hidden_state[:, 0]
    h = output.hidden_states
    tokens = {"avg": lambda: h[-1], "avg_top2": lambda: (h[-1] + h[-2]) / 2.0,
              "avg_first_last": lambda: (h[1] + h[-1]) / 2.0}[pooler]()
    mask = attention_mask.unsqueeze(-1)
    return (tokens * mask).sum(1) / mask.sum(1)


def embedding_pooler(pooler, mlp_only_train):
    """The embedding of a model trained with `pooler`: with the MLP in training only (section 3), [CLS]."""
    return "cls_before_pooler" if pooler == "cls" and mlp_only_train else pooler


# --- Training: two views of a batch, and the contrastive objective ---------------------------------------

def reset_mlp(model):
    """A fresh MLP (dense + tanh over [CLS]) for training, initialised as the authors' (N(0, 0.02), zero
    bias), not from BERT's next-sentence pooler. It lives in model.pooler, so a saved checkpoint's `cls`
    pooler is the trained MLP, as after the authors' conversion to the Hugging Face format."""
    model._init_weights(model.pooler.dense)


def embed_views(model, batch, n_views, pooler="cls", fixed_mask=False, view_dropout=None):
    """Embeddings (n_views, batch, hidden) of a tokenised batch that holds n_views blocks of sentences.

    Unsupervised (section 3): the two blocks are the same sentences, passed together in train mode, so
    each view gets its own dropout mask -- dropout is the only augmentation. Supervised (section 4):
    premises, entailments and contradictions. fixed_mask (Table 3, "Fixed 0.1"): one pass, both views.
    view_dropout: bert's set_dropout arguments for the first block and for the others (train.py's
    --view-dropout P1 P2; P2 = 0: clean positives and in-batch negatives). A module has one p, so the first
    block passes at its rates, then the others at theirs: two passes of parts of the batch, the work of one.
    The model is left at the first block's rates."""
    if view_dropout:
        n, bert = len(batch["input_ids"]) // n_views, getattr(model, "module", model)  # (DDP's wrapper)
        z = []
        for rates, rows, views in zip(view_dropout, (slice(None, n), slice(n, None)), (1, n_views - 1)):
            bert.set_dropout(**rates)
            z.append(embed_views(model, {k: v[rows] for k, v in batch.items()}, views, pooler))
        bert.set_dropout(**view_dropout[0])
        return torch.cat(z)
    if fixed_mask:
        batch = {k: v[:len(v) // n_views] for k, v in batch.items()}  # one block: one mask for both views
    out = model(**batch, output_hidden_states=pooler.startswith("avg"))
    z = pool(out, batch["attention_mask"], pooler)
    return z.expand(n_views, *z.shape) if fixed_mask else z.view(n_views, -1, z.shape[-1])


SIMILARITIES = ("cos", "dot")


def contrastive_loss(z, temp=0.05, hard_negative_weight=0.0, similarity="cos"):
    """InfoNCE with in-batch negatives on cosine similarity / temp (similarity="dot": the dot product,
    Table D.1).

    z (2, N, d): anchors h_i and positives h_i+: eq. 1,  -log e^{sim(h_i,h_i+)/t} / sum_j e^{sim(h_i,h_j+)/t}.
    z (3, N, d): and hard negatives h_i- (contradictions) of every anchor in the denominator: eq. 5, with
    hard_negative_weight w added to each anchor's own hard-negative logit, as the authors' code (e^w x)."""
    return F.cross_entropy(*logits(z, temp, hard_negative_weight, similarity))


def logits(z, temp=0.05, hard_negative_weight=0.0, similarity="cos"):
    """(logits, labels) of contrastive_loss: row i holds sim(h_i, h_j+) / temp for every j (and the hard
    negatives' columns), and labels[i] = i, the column of anchor i's own positive."""
    with torch.autocast(z.device.type, enabled=False):  # in fp32, whatever the encoder ran in
        z = F.normalize(z.float(), dim=-1) if similarity == "cos" else z.float()  # unit vectors: dot = cos
        n = z.shape[1]
        scores = z[0] @ z[1:].flatten(0, 1).T / temp  # (N, N) anchors x positives [| hard negatives]
        labels = torch.arange(n, device=z.device)  # anchor i's positive is column i
        if z.shape[0] == 3:  # anchor i's own hard negative is column n + i
            scores = scores + hard_negative_weight * F.one_hot(n + labels, 2 * n)
        return scores, labels


def signals(z, temp=0.05, hard_negative_weight=0.0, similarity="cos"):
    """Is it learning? Read off a step's embeddings z (the loss's own): [top1, pos_cos, neg_cos], on z's
    device -- the share of anchors whose positive is their best column (chance: 1 / columns, when the loss
    is ln columns), and the mean cosine of the positive pairs and of the in-batch negatives (every other
    column, hard negatives included)."""
    with torch.no_grad(), torch.autocast(z.device.type, enabled=False):
        n = z.shape[1]
        scores, labels = logits(z, temp, hard_negative_weight, similarity)
        top1 = scores.argmax(1).eq(labels)
        unit = F.normalize(z.float(), dim=-1)
        cos = unit[0] @ unit[1:].flatten(0, 1).T
        positive = torch.eye(n, cos.shape[1], dtype=torch.bool, device=z.device)
        return torch.stack([top1.float().mean(), cos[positive].mean(), cos[~positive].mean()])


def loss(model, batch, n_views, cfg, gather=None, mlm=None, mlm_seed=0):
    """A tokenised batch's SimCSE loss and the embeddings it compares: its views through the pooler, eq. 1 or
    eq. 5 over the whole batch (gather: with the other processes' shares under torchrun, distributed.py),
    plus lambda * L_mlm with --do-mlm (mlm.py, the paper's appendix; its masks drawn from mlm_seed). cfg: the
    run's TrainConfig (pooler, fixed_mask, view dropout, temp, ...). Returns (loss, z: (views, batch, d))."""
    z = embed_views(model, batch, n_views, cfg.pooler, cfg.fixed_mask, cfg.views_dropout())  # (views, N, d)
    z = gather(z) if gather else z
    total = contrastive_loss(z, cfg.temp, cfg.hard_negative_weight, cfg.similarity)
    return (total + cfg.mlm_weight * mlm.loss(model, batch, mlm_seed) if mlm else total), z


# --- Analysis: alignment and uniformity (Wang & Isola, 2020; section 2, eq. 2 and 3; Figure 2) --------

def alignment(x, y):
    """E ||f(x) - f(x+)||^2 over positive pairs of L2-normalised embeddings (lower is better)."""
    return (x - y).norm(dim=1).pow(2).mean().item()


def uniformity(x, t=2):
    """log E exp(-t ||f(x) - f(y)||^2) over all pairs of L2-normalised embeddings (lower is better)."""
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log().item()
