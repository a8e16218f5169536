"""memkit's own calls into transformers print nothing: no deprecated cache keyword on any family, and no
"sequence is longer than the model" notice when a long document is tokenized on purpose (to be chunked or
counted). Warnings are recorded with every filter set to "always", and transformers' logger is listened to
directly (its handler may write to a stream captured elsewhere) as well as through the captured stderr."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
from transformers.utils import logging as hf_logging

from experiments.tiny_model import FAMILIES, build_tokenizer
from memkit.chunking import token_spans
from memkit.engine import Engine
from memkit.hooks import Prefix
from memkit.lm import FrozenLM
from memkit.methods import build_method
from memkit.documents import SourceDocument
from storage import Store

LIMIT = 64                                         # the bounded tokenizer's model_max_length
LONG = " ".join(f"Line {i}: Ada Varn keeps the lighthouse of Port Elsin for the Harbour Trust." for i in range(60))
TEXTS = ["Ada Varn lives in Port Elsin and keeps the lighthouse there.",
         "Mira Okonde leads the Harbour Trust of the northern coast.", LONG]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def nothing_printed(capfd, *tokenizers):
    """Fail if the block warns, logs through transformers at WARNING or above, or writes to stdout/stderr."""
    hf_logging.warning_once.cache_clear()          # transformers' once-per-process warnings fire again
    for tok in tokenizers:
        tok.deprecation_warnings.clear()           # and so do a tokenizer's once-per-instance notices
    records = _Records()
    root = hf_logging.get_logger()
    root.addHandler(records)
    capfd.readouterr()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        root.removeHandler(records)
    printed = capfd.readouterr()
    assert [str(w.message) for w in caught] == []
    assert [m for m in records.messages] == []
    assert printed.err == "" and printed.out == ""


@pytest.fixture(scope="module")
def bounded_tokenizer():
    """The tiny models' tokenizer with a real length limit (theirs has none), as real tokenizers have."""
    tok = build_tokenizer()
    tok.model_max_length = LIMIT
    return tok


@pytest.fixture(scope="module")
def lms(tiny_model_dir, bounded_tokenizer):
    cache: dict[str, FrozenLM] = {}

    def get(family: str) -> FrozenLM:
        if family not in cache:
            lm = FrozenLM.load(str(tiny_model_dir(family)), device="cpu", dtype="float32")
            cache[family] = FrozenLM(lm.model, bounded_tokenizer, name=lm.name)
        return cache[family]

    return get


def test_chunking_and_counting_a_document_longer_than_the_model_is_silent(capfd, lms, bounded_tokenizer):
    lm = lms("llama")
    with nothing_printed(capfd, bounded_tokenizer):
        spans = token_spans(bounded_tokenizer, LONG, 32, 4)
        count = lm.count_tokens(LONG)
        lm.embed([LONG])
    assert count > LIMIT and len(spans) > 1


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_with_and_without_a_prefix_is_silent(capfd, lms, bounded_tokenizer, family):
    lm = lms(family)
    with nothing_printed(capfd, bounded_tokenizer):
        plain = lm.generate(["The lighthouse keeper", "x"], max_new_tokens=4)
        prefix = lm.prefix_from_text("Ada Varn lives in Port Elsin.")
        with_prefix = lm.generate(["The lighthouse keeper", "x"], max_new_tokens=4, prefix=prefix)
        lm.logits(["Where does Ada live?"], prefix=prefix)
    assert len(plain) == len(with_prefix) == 2
    assert isinstance(prefix, Prefix) and prefix.length > 0


def test_a_forward_that_knows_only_past_key_values_gets_it(lms):
    class OldForward(torch.nn.Module):
        """A model whose forward knows only past_key_values (transformers < 5, some remote-code families)."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config
            self.generation_config = inner.generation_config
            self.seen: set[str] = set()

        def get_input_embeddings(self):
            return self.inner.get_input_embeddings()

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                    use_cache=None, logits_to_keep=0):
            if past_key_values is not None:
                self.seen.add("past_key_values")
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             cache=past_key_values, use_cache=use_cache, logits_to_keep=logits_to_keep)
            return SimpleNamespace(logits=out.logits, past_key_values=out.get("cache"))   # the old output name

    new = lms("llama")
    old = FrozenLM(OldForward(new.model), new.tokenizer, name=new.name)
    prefix = new.prefix_from_text("Ada Varn lives in Port Elsin.")
    prompts = ["The lighthouse keeper", "x", "Question: Where does Ada Varn live? Answer:"]
    assert old.generate(prompts, max_new_tokens=5) == new.generate(prompts, max_new_tokens=5)
    assert old.generate(prompts, max_new_tokens=5, prefix=prefix) == new.generate(prompts, max_new_tokens=5,
                                                                                prefix=prefix)
    assert torch.equal(old.prefix_from_text("Ada Varn lives in Port Elsin.").keys[0], prefix.keys[0])
    assert old.model.seen == {"past_key_values"}


def test_a_hybrid_ask_with_a_delta_and_a_slot_prefix_is_silent(capfd, tiny_lm, tiny_generator_dir, tiny_slot_dir,
                                                                tmp_path, bounded_tokenizer):
    lm = FrozenLM(tiny_lm.model, bounded_tokenizer, name=tiny_lm.name)
    method = build_method("hybrid", lm, {"generator": str(tiny_generator_dir), "model": str(tiny_slot_dir),
                                         "chunk_tokens": 16, "max_new_tokens": 4, "top_n": 2, "top_k": 2})
    store = Store.create(tmp_path / "h", model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="hybrid", method_config=method.config_dict(), key_dim=method.key_dim)
    engine = Engine(lm, method, store)
    try:
        with nothing_printed(capfd, bounded_tokenizer):
            engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
            answer = engine.ask("Who leads the Harbour Trust?")
            engine.ask_many(["Who leads the Harbour Trust?", "Where does Ada Varn live?"], batch_size=2)
    finally:
        store.close()
    assert answer.sources


def test_a_rag_ingest_of_a_long_document_and_an_ask_are_silent(capfd, lms, bounded_tokenizer, tmp_path):
    lm = lms("llama")
    method = build_method("rag", lm, {"chunk_tokens": 32, "chunk_overlap": 4, "max_new_tokens": 4})
    store = Store.create(tmp_path / "r", model_id=lm.name, model_revision=None, model_fingerprint=lm.fingerprint,
                         method="rag", method_config=method.config_dict(), key_dim=method.key_dim)
    engine = Engine(lm, method, store)
    try:
        with nothing_printed(capfd, bounded_tokenizer):
            report = engine.ingest([SourceDocument(text=t, source=f"d{i}") for i, t in enumerate(TEXTS)])
            answer = engine.ask("Who leads the Harbour Trust?")
    finally:
        store.close()
    assert len(report.added) == 3 and answer.sources
