"""The ``Store``'s searches and its vector index as a whole.

Owns: ``StoreSearch``, the methods of ``Store`` that find memories (nearest keys through the vector index,
best word matches through the database's full-text index, both joined with their SQL rows by ``search``), the
key statistics a sparse key encoder weighs queries by, and what the index is and its rebuild (``index_info``,
``reindex``). Before a search the index is loaded if need be, and a reader first follows the writer's commits
(``keeper``). A mixin of ``Store``, using its ``_session``, ``_info``, ``_keeper`` and ``_require_writable``;
it knows nothing of how documents are written or how a store is opened. Knows nothing of models, tokenizers or
torch: query keys are numpy arrays made by someone else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from storage.database import guarded
from storage.errors import DimensionMismatchError
from storage.index import IndexSpec
from storage.search import search_joined, search_lexical
from storage.types import Hit


class StoreSearch:
    """Searching the collection's memories and keeping its index (mixed into ``Store``)."""

    def search(self, key: np.ndarray, k: int, kinds: set[str] | None = None) -> list[Hit]:
        """The ``k`` memories whose keys have the largest inner product with ``key``, best first."""
        key = np.asarray(key, dtype=np.float32)
        if key.ndim != 1:
            raise ValueError(f"search takes one 1-D key, got shape {list(key.shape)}; use search_many for a batch")
        return self.search_many(key[None, :], k, kinds)[0]

    @guarded
    def search_many(self, keys: np.ndarray, k: int, kinds: set[str] | None = None, *,
                    with_text: bool = False, as_of: str | None = None) -> list[list[Hit]]:
        """``search`` for each row of ``keys`` ([q, d]); optionally only memories whose kind is in ``kinds``, and
        with ``as_of`` (ISO 8601 UTC, as ``memkit.sources.parse_timestamp`` makes it) only memories of documents
        timestamped at or before it (documents without a timestamp are left out then); with ``with_text`` each
        hit carries its document's text (read in the same query)."""
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2:
            raise ValueError(f"search_many takes keys of shape [q, d], got {list(keys.shape)}")
        self._follow()
        index, dim = self._keeper.index, self._keeper.key_dim
        if dim is not None and keys.shape[1] != dim:
            raise DimensionMismatchError(dim, keys.shape[1], what="query key")
        return search_joined(index, self._session, self._info.id, keys, k, kinds, with_text, as_of)

    @guarded
    def search_text_many(self, queries: Sequence[str], k: int, kinds: set[str] | None = None, *,
                         with_text: bool = False, as_of: str | None = None) -> list[list[Hit]]:
        """For each query text, the ``k`` memories that best match its words by the database's full-text index
        (SQLite FTS5's BM25; PostgreSQL's ``ts_rank``), best first, with the same filters as ``search_many``. A
        hit's ``score`` is the database's (higher is better; not comparable with a key's inner product). A query
        without a content word finds nothing; no character of a query is query syntax."""
        return search_lexical(self._session, self._info.id, list(queries), k, kinds, with_text, as_of)

    @guarded
    def key_frequencies(self) -> tuple[np.ndarray, int]:
        """``(counts, n)``: per key dimension, how many of the ``n`` indexed memories have a non-zero entry
        there (what a sparse key encoder weighs queries by; ``memkit.embedders.LexicalEmbedder``)."""
        self._follow()
        index = self._keeper.index
        if index is None or index.ntotal == 0:
            return np.zeros(self._keeper.key_dim or 0, dtype=np.int64), 0
        return index.key_frequencies(), index.ntotal

    def index_info(self) -> dict:
        """The index asked for (``spec``) and the one held (``kind``, its ``params``, ``vectors``, ``tombstones``),
        loading it if need be."""
        self._follow()
        index = self._keeper.index
        return {"spec": self._keeper.spec.to_dict(), "kind": None if index is None else index.kind,
                "params": {} if index is None else index.params, "vectors": self._keeper.ntotal,
                "tombstones": 0 if index is None else index.tombstones}

    @guarded
    def reindex(self, spec: IndexSpec | None = None) -> int:
        """Rebuilds the index from the keys in SQL and saves it; returns the number of vectors. With ``spec``,
        the collection's index becomes that kind (recorded in the store) first."""
        self._require_writable()
        if spec is not None:
            self._keeper.set_spec(spec)
        self._keeper.rebuild()
        self._keeper.save()
        return self._keeper.ntotal

    def _follow(self) -> None:
        """The index, loaded if need be; a reader also follows the writer's commits."""
        if self.writable:
            self._keeper.get()
        else:
            self._keeper.refresh()
