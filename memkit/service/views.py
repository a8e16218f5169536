"""What memkit returns, as every front door shows it (JSON from the CLI's ``--json`` and from the HTTP API).

Owns: ``answer_view`` (an ``Answer`` with each source's external id, timestamp and merge weight, the timings and
the usage and notes), ``documents_of`` (the stored documents an answer's sources name, in one query),
``document_view`` and ``collection_view``. Knows neither the CLI nor the server.
"""

from __future__ import annotations

from typing import Sequence


def documents_of(store, answers: Sequence) -> dict:
    """The stored rows of every document the ``answers``' sources name, by id (one query)."""
    ids = {s.document_id for answer in answers for s in answer.sources}
    return store.get_documents(ids) if ids else {}


def answer_view(answer, docs: dict, **extra) -> dict:
    """``answer`` as memkit shows it: text, method, sources (each with its document's external id and
    timestamp from ``docs``, and its merge weight where the method merged), timings in milliseconds, and
    ``info`` (usage and notes); ``extra`` fields (e.g. the collection, the batch size) lead."""
    sources = []
    for src in answer.sources:
        doc = docs.get(src.document_id)
        sources.append({**src.to_dict(), "external_id": doc.external_id if doc else None,
                        "timestamp": doc.timestamp if doc else None})
    return {**extra, "question": answer.question, "answer": answer.text, "method": answer.method,
            "sources": sources, "timings_ms": {k: round(v, 3) for k, v in answer.timings.items()},
            "info": answer.info()}


def document_view(row, with_text: bool = False) -> dict:
    """A stored document: ids, source, stream and position, timestamp, memories, when it was added, its meta and
    length (and its text with ``with_text``)."""
    out = {"id": row.id, "external_id": row.external_id, "source": row.source, "timestamp": row.timestamp,
           "stream": row.stream, "position": row.position, "memories": row.n_memories, "created_at": row.created_at,
           "meta": row.meta, "chars": len(row.text)}
    if with_text:
        out["text"] = row.text
    return out


def collection_view(info) -> dict:
    """A collection: its name, model (and revision), method and options, key dimension, when it was made."""
    return {"name": info.name, "model": info.model_id, "revision": info.model_revision, "method": info.method,
            "options": info.method_config, "key_dim": info.key_dim, "created_at": info.created_at}
