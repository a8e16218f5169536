"""``Engine.ingest`` checks every document it is handed, whoever built it: a bad one is reported as refused and
never reaches the method or the store, and the rest of its batch is kept."""

from __future__ import annotations

import pytest

from memkit.engine import Engine
from memkit.methods import build_method
from memkit.documents import ReadLimits, SourceDocument
from storage import Store


@pytest.fixture
def engine(tiny_lm, tmp_path):
    method = build_method("prompt", tiny_lm, {})
    store = Store.create(tmp_path / "store", model_id=tiny_lm.name, model_revision=None,
                         model_fingerprint=tiny_lm.fingerprint, method="prompt",
                         method_config=method.config_dict(), key_dim=method.key_dim)
    engine = Engine(tiny_lm, method, store)
    encoded: list[str] = []
    encode = method.encode
    method.encode = lambda texts: encoded.extend(texts) or encode(texts)
    engine.encoded = encoded
    yield engine
    store.close()


def test_bad_documents_are_refused_and_the_rest_of_the_batch_kept(engine):
    items = [
        SourceDocument(text="Ada Varn keeps the lighthouse.", source="good-1", stream="news"),
        SourceDocument(text="lone \ud800 surrogate", source="bad-surrogate"),
        SourceDocument(text="nul \x00 inside", source="bad-nul"),
        SourceDocument(text="empty source", source=""),
        SourceDocument(text="long id", source="bad-id", external_id="x" * 300),
        SourceDocument(text="meta that is not JSON", source="bad-meta", meta={"when": object()}),
        "a plain string, not a document",
        SourceDocument(text="Tomas Brell draws maps.", source="good-2", stream="news"),
        SourceDocument(text="   ", source="bad-empty"),
        SourceDocument(text="Mira Okonde leads the Trust.", source="good-3", stream="news"),
    ]
    refused = []
    report = engine.ingest(items, progress=lambda event, item: refused.append(str(item)) if event == "failed" else 0)
    assert len(report.added) == 3 and engine.encoded == [items[i].text for i in (0, 7, 9)]
    assert [engine.store.get_document(i).source for i in report.added] == ["good-1", "good-2", "good-3"]
    assert [engine.store.get_document(i).position for i in report.added] == [0, 1, 2]
    assert [str(e) for e in report.failed] == refused == [
        "bad-surrogate: the text contains a lone surrogate (\\ud800 at character 5), which is not valid Unicode",
        "bad-nul: the text contains a NUL character (at character 4); memkit ingests text, not binary data",
        "item 4: 'source' is empty",
        "bad-id: 'id' is longer than 200 characters",
        "bad-meta: field 'when' holds a value of type object, which is not JSON",
        "item 7: not a SourceDocument but a str",
        "bad-empty: the text is empty (nothing but whitespace)",
    ]


def test_document_limit_applies_to_documents_built_by_hand(engine):
    big = SourceDocument(text="word " * 40, source="big")              # 200 bytes
    report = engine.ingest([big, SourceDocument(text="small one", source="small")],
                           limits=ReadLimits(max_doc_bytes=100))
    assert len(report.added) == 1 and engine.encoded == ["small one"]
    assert [str(e) for e in report.failed] == [
        "big: larger than the 100 bytes limit (--max-doc-bytes); it has 200 characters; raise the limit to ingest it"]
    assert len(engine.ingest([big]).added) == 1, "the default limit is far larger"
