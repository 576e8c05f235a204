"""speed.py: bf16 where the hardware has it (the choice of precision, and what bf16 can promise against fp32),
and the CPU's dropout, whose masks must still be Bernoulli(1 - p) draws fixed by the seed."""
import pytest
import torch
import torch.nn.functional as F

from infra import speed
from bert import BertModel
from tool import encode
from formats.tokenizer import load_tokenizer

CPU = torch.device("cpu")


def test_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: True)
    assert (speed.autocast_dtype(CPU, "auto") is torch.bfloat16
            and speed.autocast_dtype(CPU, "bf16") is torch.bfloat16)
    assert speed.autocast_dtype(CPU, "fp32") is None
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: False)  # no bf16 units: nothing changes, fp32
    assert speed.autocast_dtype(CPU, "auto") is None
    with pytest.raises(ValueError, match="--precision bf16: this CPU has no bf16 matrix units"):
        speed.autocast_dtype(CPU, "bf16")
    with pytest.raises(ValueError, match="expected one of auto, bf16, fp32"):
        speed.autocast_dtype(CPU, "fp16")


def test_cpu_flags_are_read(tmp_path, monkeypatch):
    assert speed.cpu_has_bf16() == (torch.cpu._is_amx_tile_supported()
                                    or torch.cpu._is_avx512_bf16_supported())


@pytest.mark.skipif(not speed.cpu_has_bf16(), reason="this CPU has no bf16 matrix units")
def test_bf16_embeddings_stay_close_to_fp32(minilm_dir, data_root):
    """What bf16 can promise: embeddings within a cosine of 0.999 of fp32's (bf16 keeps 8 bits of mantissa),
    and the training step's gradient pointing the same way."""
    import data
    from simcse import contrastive_loss, embed_views
    model, tokenizer = BertModel.from_pretrained(minilm_dir), load_tokenizer(minilm_dir)
    sentences = data.load_sts("STSBenchmark", data_root)["dev"].sent1[:200]
    fp32 = encode(model, tokenizer, sentences, "avg")
    bf16 = encode(model, tokenizer, sentences, "avg", precision="bf16")
    assert not torch.equal(fp32, bf16)  # it did run in bf16
    assert F.cosine_similarity(fp32, bf16).min() > 0.999

    batch = tokenizer(sentences[:16] * 2, 32)
    model.set_dropout(0.0)  # the same network in both, so that only the precision differs
    grads = []
    for precision in ("fp32", "bf16"):
        model.zero_grad()
        with speed.autocast(CPU, speed.autocast_dtype(CPU, precision)):
            z = embed_views(model.train(), batch, 2, "cls_before_pooler")
        contrastive_loss(z).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.99


# --- FastDropout: the same distribution as nn.Dropout, four masks per random draw ------------------------

@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_fast_dropout_keeps_each_element_with_probability_1_minus_p(p):
    """Kept elements are x / (1 - p), the others 0; the keep rate is 1 - p (p rounded to 2^-16) overall, in
    each of the four 16-bit lanes of a 64-bit draw, and neighbours are independent: P(both kept) =
    (1 - p)^2."""
    torch.manual_seed(0)
    x = torch.rand(1 << 22) + 1.0  # no zeros: a zero out is a dropped element
    y = speed.FastDropout(p).train()(x)
    keep = y != 0
    assert torch.equal(y[keep], x[keep] * (1 / (1 - p)))
    q = 1 - round(p * 2**16) / 2**16
    sigma = (q * (1 - q) / x.numel()) ** 0.5
    assert abs(keep.float().mean().item() - q) < 5 * sigma
    for lane in range(4):
        assert abs(keep[lane::4].float().mean().item() - q) < 10 * sigma
    both = (keep[:-1] & keep[1:]).float().mean().item()
    assert abs(both - q * q) < 10 * sigma


def test_fast_dropout_masks_follow_the_seed_and_the_gradient_follows_the_mask():
    drop, x = speed.FastDropout(0.1).train(), torch.randn(1000, 384, dtype=torch.bfloat16)
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    assert torch.equal(a, drop(x))  # the same seed, the same mask: resume replays a step exactly
    assert not torch.equal((a != 0), (drop(x) != 0))  # the next draw: a new mask
    assert a.dtype == torch.bfloat16 and torch.equal(a, x * (a != 0) * (1 / 0.9))  # nn.Dropout's rounding
    leaf = x.float().requires_grad_()
    torch.manual_seed(4)
    out = drop(leaf)
    out.backward(torch.ones_like(out))
    assert torch.equal(leaf.grad, (out != 0).float() * (1 / 0.9))
    assert drop.eval()(x) is x and speed.FastDropout(0.0).train()(x) is x


def test_speed_puts_fast_dropout_at_every_dropout_site_of_the_cpu_step(minilm_dir):
    model = BertModel.from_pretrained(minilm_dir)
    keys = list(model.state_dict())
    sites = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)]
    speed.Speed(CPU, precision="fp32").prepare(model)
    assert sites and all(type(model.get_submodule(name)) is speed.FastDropout for name in sites)
    assert list(model.state_dict()) == keys  # checkpoints unchanged
    model.set_dropout(0.2)  # the ablation knob still reaches every site
    assert all(model.get_submodule(name).p == 0.2 for name in sites)
