"""Loading with a ``device_map`` (handed to ``from_pretrained``, which places the weights) and a dtype: the model
works where it was placed, in that dtype, frozen."""

from __future__ import annotations

import pytest
import torch

from memkit.lm import FrozenLM

QUESTION = "Question: Where does Ada Varn live?\nAnswer:"


@pytest.mark.parametrize("device_map", ["cpu", {"": "cpu"}])
def test_a_device_map_and_a_dtype_give_a_working_model_there(tiny_model_dir, device_map, monkeypatch):
    import memkit.loading as loading

    handed = []
    real = loading._from_pretrained

    def spy(*args, **kw):
        handed.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(loading, "_from_pretrained", spy)
    path = str(tiny_model_dir("llama"))
    lm = FrozenLM.load(path, device_map=device_map, dtype="bfloat16")
    assert handed[0]["device_map"] == device_map and handed[0]["dtype"] == torch.bfloat16
    assert lm.device == torch.device("cpu") and lm.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 and p.device.type == "cpu" for p in lm.model.parameters())
    assert not any(p.requires_grad for p in lm.model.parameters())

    logits, mask = lm.logits([QUESTION])
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    reference = FrozenLM.load(path, device="cpu", dtype="float32")
    ref_logits, _ = reference.logits([QUESTION])
    # the same model, rounded to bfloat16: close to float32's logits, not equal
    assert torch.allclose(logits.float(), ref_logits, atol=0.05)
    assert lm.fingerprint == reference.fingerprint

    answers = lm.generate([QUESTION, "Memory lets a frozen"], max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert lm.generate([QUESTION], max_new_tokens=4) == answers[:1]    # batched as one at a time
