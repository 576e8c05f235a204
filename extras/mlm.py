"""The auxiliary masked-language-modelling objective, --do-mlm (the authors' `--do_mlm`). The paper's appendix
studies adding lambda * L_mlm to the contrastive loss, which trades STS for transfer-task accuracy. As the
authors' `cl_forward` (simcse/models.py) computes it:

    loss = contrastive_loss(...) + mlm_weight * MaskedLM.loss(...)   # simcse.loss; lambda = 0.1

L_mlm is BERT's masked-LM cross-entropy on a masked copy of the whole batch (every view: 15% of the tokens
chosen, 80% of those replaced by the mask token, 10% by a random token, 10% kept; their train.py's data
collator), encoded in a third pass through the encoder (dropout masks of its own, the same attention mask),
read by a prediction head at the chosen tokens.

The head, as in the authors' train.py and models.py. BERT: the checkpoint's pre-training head
`cls.predictions` copied into BertForCL.lm_head (what BertForPreTraining.from_pretrained gives: missing
weights random, the decoder tied there to the word embeddings). RoBERTa: the checkpoint's `lm_head`
(RobertaLMHead). Either way the copy is *not* tied: its decoder starts equal to the word embeddings but is
trained as a parameter of its own (BertForCL and RobertaForCL define no output embeddings, so transformers
ties nothing). A checkpoint without the decoder (transformers 5 does not save tied weights) gets the word
embeddings, which is what it stands for.

The head lives at model.lm_head while training: optimised, and saved in last/ to resume. best/ holds the
encoder only (checkpoint.save_model), which any BERT or RoBERTa loader reads without unexpected keys.
"""
import torch
import torch.nn.functional as F
from torch import nn

from bert import ACTIVATIONS
from formats.checkpoint import read_weights, weights_file

MLM_PROBABILITY = 0.15  # the authors' --mlm_probability (BERT's 15%)
IGNORE = -100  # the label of a token that is not predicted (cross_entropy's ignore_index)


def mask_tokens(input_ids, special_ids, mask_id, vocab_size, generator, p=MLM_PROBABILITY):
    """(masked copy of input_ids, labels), as the authors' data collator's mask_tokens (BERT's recipe), drawn
    from `generator` in the same order. Special tokens, padding among them, are never chosen."""
    full = lambda prob: torch.full(input_ids.shape, prob, device=input_ids.device)
    special = torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    chosen = torch.bernoulli(full(p).masked_fill(special, 0.0), generator=generator).bool()  # 15%: predicted
    replaced = torch.bernoulli(full(0.8), generator=generator).bool() & chosen  # 80% of them: the mask token
    randomised = torch.bernoulli(full(0.5), generator=generator).bool() & chosen & ~replaced  # 10%: random
    random_ids = torch.randint(vocab_size, input_ids.shape, device=input_ids.device, generator=generator)
    masked = torch.where(randomised, random_ids, input_ids.masked_fill(replaced, mask_id))  # 10%: unchanged
    return masked, input_ids.masked_fill(~chosen, IGNORE)


class LMHead(nn.Module):
    """BERT's BertLMPredictionHead, the same as RoBERTa's RobertaLMHead: dense, activation, LayerNorm, then a
    decoder to the vocabulary (its bias is the checkpoint's `bias`)."""

    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.act = ACTIVATIONS["gelu" if c.model_type == "roberta" else c.hidden_act]  # RobertaLMHead: gelu
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)

    def forward(self, x):
        return self.decoder(self.LayerNorm(self.act(self.dense(x))))


HEAD_PREFIX = {"bert": "cls.predictions.", "roberta": "lm_head."}  # where a checkpoint keeps its MLM head


def head_weights(name_or_dir, model_type):
    """The MLM head's weights in a checkpoint, under LMHead's names (an empty dict when it has none)."""
    prefix, found = HEAD_PREFIX[model_type], {}
    for key, value in read_weights(weights_file(name_or_dir)).items():
        key = key.removeprefix("bert.").removeprefix("roberta.")
        if key.startswith(prefix):
            key = key[len(prefix):].replace("gamma", "weight").replace("beta", "bias")  # TF-era names
            key = "decoder.bias" if key == "bias" else key.replace("transform.", "")
            found[key.replace("layer_norm", "LayerNorm")] = value
    return found


def load_head(model, name_or_dir):
    """The head the authors start from (see above). Where the checkpoint has no weights: BERT's initialisation
    (N(0, 0.02) weights, zero biases, LayerNorm 1 and 0), and the word embeddings for the decoder."""
    head = LMHead(model.config)
    head.apply(model._init_weights)
    weights = head_weights(name_or_dir, model.config.model_type)
    weights.setdefault("decoder.weight", model.embeddings.word_embeddings.weight)  # tied in the checkpoint
    unknown = sorted(set(weights) - set(head.state_dict()))
    if unknown:
        raise KeyError(f"{name_or_dir}: unexpected MLM head weight(s) {', '.join(unknown)}")
    head.load_state_dict(weights, strict=False)  # copies: nothing is tied
    return head


class MaskedLM:
    """The auxiliary objective in one training process. It attaches the head to the model as model.lm_head,
    so that the optimizer, last/ and DistributedDataParallel include it, and gives each step's L_mlm."""

    def __init__(self, model, tokenizer, name_or_dir):
        if tokenizer.mask_id is None:
            raise ValueError(f"--do-mlm: the tokenizer of {name_or_dir} has no mask token")
        self.head = model.lm_head = load_head(model, name_or_dir)
        self.tokens = (tokenizer.special_ids, tokenizer.mask_id, tokenizer.vocab_size)

    def masks(self, batch, seed):
        """(masked copy, labels) of the whole batch's input_ids, drawn from a generator seeded by `seed`, the
        step's stream of its own (data.step_seed): the dropout masks are the same with and without
        --do-mlm."""
        ids = batch["input_ids"]
        return mask_tokens(ids, *self.tokens, torch.Generator(ids.device).manual_seed(seed))

    def predictions(self, model, batch, masked, labels):
        """(logits, labels) at the chosen tokens of a batch, or of some of its rows (gradcache.py)."""
        chosen = labels != IGNORE
        out = model(masked, batch["attention_mask"], batch.get("token_type_ids"))  # the third pass
        logits = self.head(out.last_hidden_state[chosen])  # at the chosen tokens only: the same mean
        return logits.float(), labels[chosen]

    def loss(self, model, batch, seed):
        """L_mlm of a tokenised batch: the mean cross-entropy over its chosen tokens (masks: `seed`)."""
        return F.cross_entropy(*self.predictions(model, batch, *self.masks(batch, seed)))
