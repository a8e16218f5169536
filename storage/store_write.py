"""The ``Store``'s write path: adding documents in batches and removing them.

Owns: ``StoreWrites``, the methods of ``Store`` that change documents. A batch (``add_documents``) is checked
whole first (``records``), then its payloads go to one segment file listed in ``write.pending`` beforehand, its
documents', memories' and full-text rows are inserted with bulk statements in one SQL transaction that bumps the
generation once, and only after the commit do its keys go into the index: all or nothing, and an interrupt
after the commit keeps the documents whole (the database is asked before anything is undone). A removal
commits first, then drops the keys from the index and deletes the blob files no other record still uses.
A mixin of ``Store``, using its ``_session``, ``_info``, ``_keeper``, ``_blobs``, ``_pending``,
``_require_writable`` and its reads (``StoreReads``); it knows nothing of how a store is opened. Knows nothing
of models, tokenizers or torch: keys and payloads are numpy arrays made by someone else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage import lexical, queries
from storage.blobs import BlobIntegrityError
from storage.database import guarded
from storage.errors import DocumentNotFoundError
from storage.records import PreparedRecords, prepare_records
from storage.rows import memory_values
from storage.schema import Collection, Document, Memory, utc_now
from storage.store_read import MAX_ID
from storage.types import AddResult, DocumentIn, RecordIn

log = logging.getLogger(__name__)


class StoreWrites:
    """Adding and removing documents with their memories (mixed into ``Store``; only a writer may)."""

    @guarded
    def add_document(self, doc: DocumentIn, records: list[RecordIn]) -> AddResult:
        """Adds a document and its records as one unit, or returns the stored twin of a duplicate text
        (``add_documents`` of one)."""
        return self.add_documents([(doc, records)])[0]

    @guarded
    def add_documents(self, items: Sequence[tuple[DocumentIn, list[RecordIn]]]) -> list[AddResult]:
        """Adds several documents with their records in one write, one ``AddResult`` per item in order; a text
        already stored (or given earlier in ``items``) is a duplicate of that document and writes nothing.

        Every item is checked before anything is written (a bad one raises and nothing is added). Then the
        payloads of all records go to one segment file (one fsync), and one SQL transaction inserts the rows,
        bumps the generation once and adds the keys to the index in memory; the commit makes every document
        of the call visible at once. On any failure the segment and the index entries of this call are removed
        and the transaction rolls back: nothing of any document remains. The index file is saved after the
        commit when the keeper's policy says so (not after every write)."""
        self._require_writable()
        keeper = self._keeper
        items = [(doc, list(records)) for doc, records in items]
        dim = keeper.key_dim
        prepared = []
        for doc, records in items:
            p = prepare_records(doc, records, dim)
            dim = p.dim if p.dim is not None else dim
            prepared.append(p)
        digests = [doc.content_hash for doc, _ in items]
        stored = self.find_by_hashes(digests)
        first: dict[str, int] = {}
        new = []  # positions of the items this call writes
        for i, digest in enumerate(digests):
            if digest not in stored and digest not in first:
                first[digest] = i
                new.append(i)
        results: list[AddResult | None] = [None] * len(items)
        if new:
            try:
                written = self._write_new(items, prepared, new, dim)
            except IntegrityError:  # a text committed since our check (another writer): each on its own
                if len(new) == 1:
                    existing = self.find_by_hash(digests[new[0]])
                    if existing is None:
                        raise
                    written = {new[0]: AddResult(existing, True, [])}
                else:
                    written = {i: self.add_documents([items[i]])[0] for i in new}
            results = [written.get(i) for i in range(len(items))]
        for i, digest in enumerate(digests):
            if results[i] is None:
                twin = stored.get(digest)
                if twin is None:
                    twin = results[first[digest]].document_id
                results[i] = AddResult(twin, True, [])
        return results

    def _write_new(self, items, prepared: list[PreparedRecords], new: list[int], dim: int | None) -> dict:
        """Writes the items at positions ``new`` (none stored yet); ``position -> AddResult``."""
        keeper = self._keeper
        if any(prepared[i].key_rows for i in new):
            keeper.get()  # read (or rebuild) the index before anything is written
        payloads = [(i, j) for i in new for j, record in enumerate(items[i][1]) if record.tensors]
        rel = self._blobs.new_path(segment=True) if payloads else None
        committed = False
        doc_ids: list[int] = []
        try:
            located: dict[tuple[int, int], tuple] = {}
            if rel is not None:
                self._pending.add([rel])  # listed before written: a crash's leftover is found by the next writer
                where = self._blobs.write_segment([items[i][1][j].tensors for i, j in payloads], rel)
                located = dict(zip(payloads, where))
            with self._session() as s:
                with s.begin():
                    doc_ids, memory_ids, generation = self._insert(s, items, prepared, new, located, dim)
                committed = True
        except BaseException as e:
            # Interrupted (Ctrl-C, SIGTERM) after the COMMIT, in SQLAlchemy's bookkeeping around it: the documents
            # are in, so keep them whole; the index, which has not seen them, catches up from SQL when next used.
            # The flag misses the last moments of the commit; the database does not (when even asking it fails,
            # the files are kept and write.pending too: the next writer deletes them only if nothing uses them).
            if committed or (doc_ids and not isinstance(e, IntegrityError)
                             and self._holds(doc_ids[0], items[new[0]][0].content_hash)):
                keeper.forget()
                if committed:
                    self._pending.clear()
                raise
            if rel is not None:
                self._blobs.delete(rel)
            self._pending.clear()
            raise
        self._pending.clear()
        # The index is a cache of SQL: it takes the keys once they are committed, so a failed or interrupted
        # write never leaves an id in it that SQL does not hold (SQLite hands a rolled-back batch's ids out again).
        ids = [memory_ids[i][r] for i in new for r in prepared[i].key_rows]
        try:
            if ids:
                keeper.ensure(dim).add(ids, np.concatenate([prepared[i].keys for i in new]))
        except Exception as e:  # the documents are in: the index catches up from SQL when next used
            log.warning("the index did not take the keys of %d committed memories (%s); it is caught up from the "
                        "database when next used", len(ids), e)
            keeper.forget()
        except BaseException:
            keeper.forget()
            raise
        keeper.committed(generation, changed=len(ids))
        return {i: AddResult(doc_ids[n], False, memory_ids[i]) for n, i in enumerate(new)}

    def _insert(self, s: Session, items, prepared, new: list[int], located: dict, dim: int | None):
        """Inserts the documents at ``new`` and their memories (bulk statements), bumps the generation once;
        ``(document ids, position -> memory ids, generation)``."""
        now = utc_now()
        cid = self._info.id
        docs = [items[i][0] for i in new]
        doc_ids = list(s.scalars(
            insert(Document).returning(Document.id, sort_by_parameter_order=True),
            [dict(collection_id=cid, source=d.source, content_hash=d.content_hash, text=d.text,
                  timestamp=d.timestamp, stream=d.stream, position=d.position, external_id=d.external_id,
                  status="ready", meta=dict(d.meta), created_at=now) for d in docs]))
        rows, owners = [], []
        for doc_id, i in zip(doc_ids, new):
            keyed = set(prepared[i].key_rows)
            for j, record in enumerate(items[i][1]):
                rows.append(memory_values(doc_id, record, located.get((i, j)), j in keyed))
                owners.append(i)
        memory_ids: dict[int, list[int]] = {i: [] for i in new}
        if rows:
            ids = s.scalars(insert(Memory).returning(Memory.id, sort_by_parameter_order=True), rows)
            for owner, memory_id in zip(owners, ids):
                memory_ids[owner].append(memory_id)
        texts = []  # the searchable memories' text, for the database's own full-text index
        for i in new:
            body = items[i][0].text
            for j in prepared[i].key_rows:
                span = items[i][1][j].span
                texts.append((memory_ids[i][j], cid, body if span is None else body[span[0]:span[1]]))
        lexical.add(s, texts)
        collection = s.get(Collection, cid)
        if collection.key_dim is None and dim is not None and any(prepared[i].key_rows for i in new):
            collection.key_dim = dim
        collection.generation += 1
        s.flush()
        return doc_ids, memory_ids, collection.generation

    @guarded
    def remove_document(self, doc_id: int) -> None:
        """Deletes a document, its memories (rows, index entries) and then their blob files."""
        self._require_writable()
        committed = False
        with self._session() as s:
            try:
                with s.begin():
                    doc = s.get(Document, doc_id) if 0 <= doc_id <= MAX_ID else None
                    if doc is None or doc.collection_id != self._info.id:
                        raise DocumentNotFoundError(doc_id)
                    mems = s.execute(
                        select(Memory.id, Memory.blob_path, Memory.key.is_not(None).label("keyed"))
                        .where(Memory.document_id == doc_id)
                    ).all()
                    s.delete(doc)  # the memories go by ON DELETE CASCADE
                    collection = s.get(Collection, self._info.id)
                    collection.generation += 1
                    s.flush()
                    generation = collection.generation
                committed = True
            except DocumentNotFoundError:
                raise
            except BaseException:
                if committed or not self._holds(doc_id):  # gone, but the index has not seen it: caught up later
                    self._keeper.forget()
                raise
        keyed = [m.id for m in mems if m.keyed]
        try:
            if keyed and self._keeper.loaded and self._keeper.index is not None:  # after the commit, as adds
                self._keeper.index.remove(keyed)
        except BaseException:
            self._keeper.forget()
            raise
        self._keeper.committed(generation, removed=keyed)
        paths = sorted({m.blob_path for m in mems if m.blob_path is not None})
        if paths:
            with self._session() as s:
                shared = queries.referenced_blobs(s, paths)  # segments other documents' records still use
        for rel in paths:
            if rel in shared:
                continue
            try:
                self._blobs.delete(rel)
            except (OSError, BlobIntegrityError) as e:  # left in place; ``verify`` reports it
                log.warning("did not delete blob %r of document %s: %s", rel, doc_id, e)

    @guarded
    def remove_documents(self, doc_ids: Iterable[int]) -> list[int]:
        """Removes several documents, after checking that the collection holds every one of them (if one is
        missing, ``DocumentNotFoundError`` names each missing id and nothing is removed). Each removal is its own
        transaction. Returns the ids removed, each once, in the order given."""
        ids = list(dict.fromkeys(doc_ids))
        found = self.get_documents(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise DocumentNotFoundError(*missing, note="; nothing was removed")
        for doc_id in ids:
            self.remove_document(doc_id)
        return ids

    def _holds(self, doc_id: int, digest: str | None = None) -> bool:
        """Whether the database holds document ``doc_id`` (with text ``digest``), asked afresh; when even that
        fails, the answer that keeps files: True."""
        try:
            with self._session() as s:
                row = s.execute(select(Document.content_hash).where(Document.id == doc_id)).first()
        except Exception:
            return True
        return row is not None and (digest is None or row.content_hash == digest)
