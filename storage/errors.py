"""Errors the store raises for ordinary mistakes and damaged stores.

Owns: the exception classes of the ``storage`` package. Every message is one line that says what went wrong and
what to do. Each class carries how every front door shows it, as ``memkit.errors``' do: ``exit_code`` (the CLI
prints the line and exits with it), ``http_status`` and ``code`` (the HTTP API's status and machine code).
Knows nothing of the CLI, of models or of the memkit library (so these classes do not derive from memkit's own
error base).
"""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base of every error the store reports to a user as one line."""

    exit_code = 3
    http_status = 500
    code = "store_error"

    @property
    def http_message(self) -> str:
        """The message as the HTTP API shows it (the same line unless a class words it for the API)."""
        return str(self)


class NotAStoreError(StoreError):
    """A path that is not a memkit store (missing, a file, or a directory without ``store.json``)."""

    def __init__(self, path: Path | str, reason: str | None = None):
        self.path = Path(path)
        if reason is None:
            reason = f"{self.path} is not a memkit store; run `memkit init --store {self.path}` to create one"
        super().__init__(reason)


class StoreExistsError(StoreError):
    """``create`` was asked to make a store where one already exists."""

    http_status = 409
    code = "conflict"

    def __init__(self, path: Path | str, reason: str | None = None):
        self.path = Path(path)
        if reason is None:
            reason = f"a memkit store already exists at {self.path}; open it, or choose another --store"
        super().__init__(reason)


class StoreLockedError(StoreError):
    """A second process asked to write a store that another process is writing: found by the store directory's
    lock file (``path`` the store), or by the database's writer lock (``database``: the store's database as it
    may be shown; ``host``: the machine the holder runs on, when it said)."""

    http_status = 409
    code = "conflict"

    def __init__(self, path: Path | str | None, pid: int | None, *, database: str | None = None,
                 host: str | None = None):
        self.path = None if path is None else Path(path)
        self.database = database
        self.pid = pid
        self.host = host
        who = f"pid {pid}" if pid is not None else "pid unknown"
        if host:
            who += f" on host {host}"
        what = f"the store's database {database}" if database is not None else f"store {self.path}"
        via = "" if database is None else ", which holds the database's writer lock"
        super().__init__(f"{what} is being written by another memkit process ({who}{via}); wait for it to finish")


class ModelMismatchError(StoreError):
    """The model offered to a store differs from the model the store was built with."""

    http_status = 409
    code = "model_mismatch"

    def __init__(self, path: Path | str, store_model: str, offered_model: str):
        self.path = Path(path)
        self.store_model = store_model
        self.offered_model = offered_model
        super().__init__(
            f"store {self.path} was built with model {store_model!r}, not {offered_model!r}; "
            f"use `memkit init --store OTHER` to make a store for the new model"
        )


class CorruptBlobError(StoreError):
    """A memory payload whose file is missing or whose bytes no longer match their checksum."""

    def __init__(self, document_id: int, memory_id: int, path: Path | str, reason: str = "failed its checksum"):
        self.document_id = document_id
        self.memory_id = memory_id
        self.path = Path(path)
        super().__init__(
            f"blob of memory {memory_id} of document {document_id} {reason} ({self.path}); "
            f"run `memkit doctor` to list every damaged document, then remove and re-ingest it"
        )


class DocumentNotFoundError(StoreError):
    """A document id (or several) that the collection does not hold: a mistake in the input, not damage."""

    http_status = 404
    code = "document_not_found"

    @property
    def http_message(self) -> str:
        ids = ", ".join(map(str, self.document_ids))
        return f"no document with id {ids} in this collection; GET its /documents lists the ids"

    exit_code = 2

    def __init__(self, document_id: int, *more: int, note: str = ""):
        self.document_id = document_id
        self.document_ids = [document_id, *more]
        which = f"id {document_id}" if not more else "ids " + ", ".join(map(str, self.document_ids))
        super().__init__(f"no document with {which} in this store{note}; `memkit ls` shows the ids")


class MemoryNotFoundError(StoreError):
    """A memory id that the collection does not hold."""

    http_status = 404
    code = "memory_not_found"

    def __init__(self, memory_id: int):
        self.memory_id = memory_id
        super().__init__(f"no memory with id {memory_id} in this store")


class CollectionNotFoundError(StoreError):
    """A collection name that the store does not hold."""

    http_status = 404
    code = "collection_not_found"

    def __init__(self, path: Path | str, name: str, available: list[str]):
        self.path = Path(path)
        self.name = name
        names = ", ".join(repr(n) for n in available) or "none"
        super().__init__(f"store {self.path} has no collection {name!r} (it has: {names})")


class DimensionMismatchError(StoreError):
    """A key vector whose length differs from the collection's key dimension."""

    def __init__(self, expected: int, got: int | tuple[int, ...], what: str = "key"):
        self.expected = expected
        self.got = got
        super().__init__(
            f"{what} has dimension {got} but this store's keys have dimension {expected}; "
            f"the store was built by a different method or model configuration"
        )


class StoreFormatError(StoreError):
    """A store written by a newer memkit (unknown format or migrations) that this version cannot read safely."""


class CorruptStateError(StoreError):
    """A method state file (e.g. trained weights) that cannot be read or fails its checksum."""

    def __init__(self, name: str, path: Path | str, reason: str = "failed its checksum"):
        self.name = name
        self.path = Path(path)
        super().__init__(
            f"method state {name!r} {reason} ({self.path}); remove that file and ingest the documents again "
            f"into a new store to rebuild it"
        )


class CorruptDatabaseError(StoreError):
    """The store's database file is damaged (not a database, malformed pages, emptied) or holds no memkit
    tables. The documents live there: nothing else can rebuild it."""

    def __init__(self, where: Path | str, reason: str):
        self.where = str(where)
        super().__init__(
            f"the store's database {where} {reason}; restore it from a backup (the documents and their "
            f"memories' rows live there, so nothing can be rebuilt without it)"
        )


class DatabaseUnavailableError(StoreError):
    """The store's database cannot be opened or reached (missing, unreadable, a server that is down)."""

    def __init__(self, where: Path | str, reason: str):
        self.where = str(where)
        super().__init__(f"the store's database {where} {reason}")


class DatabaseURLError(StoreError):
    """A database URL a store cannot be made on (unknown scheme, missing driver, a folder that does not exist)."""

    http_status = 422
    code = "invalid_input"

    exit_code = 2

    def __init__(self, url: str, reason: str, origin: str = "--db-url"):
        self.url = url
        super().__init__(f"cannot use database URL {url!r} ({origin}): {reason}")



class InvalidCollectionName(StoreError):
    """A collection name that does not fit what a URL path segment and an OpenAI ``model`` field take unchanged."""

    exit_code = 2
    http_status = 422
    code = "invalid_input"

    def __init__(self, name: str):
        super().__init__(f"collection name {name!r} is not allowed: use 1 to 128 letters, digits, '.', '_' or '-', "
                         f"starting with a letter or digit")
