"""bf16 where the hardware has it: the choice of precision, and what bf16 can promise against fp32."""
import pytest
import torch
import torch.nn.functional as F

import speed
from bert import BertModel
from eval_sts import encode
from tokenizer import load_tokenizer

CPU = torch.device("cpu")


def test_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: True)
    assert speed.autocast_dtype(CPU, "auto") is torch.bfloat16 and speed.autocast_dtype(CPU, "bf16") is torch.bfloat16
    assert speed.autocast_dtype(CPU, "fp32") is None
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: False)  # no bf16 units: nothing changes, fp32
    assert speed.autocast_dtype(CPU, "auto") is None
    with pytest.raises(ValueError, match="--precision bf16: this CPU has no bf16 matrix units"):
        speed.autocast_dtype(CPU, "bf16")
    with pytest.raises(ValueError, match="expected one of auto, bf16, fp32"):
        speed.autocast_dtype(CPU, "fp16")


def test_cpu_flags_are_read(tmp_path, monkeypatch):
    assert speed.cpu_has_bf16() == (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


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
