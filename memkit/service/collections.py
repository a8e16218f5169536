"""Opening and creating collections: a store's collection wired to its model, method and engine.

Owns: ``engine_for`` (a store and a loaded model -> the ``memkit.Engine`` over them, the model checked against
the one the store was built with) and ``new_collection`` (a model and a method -> the method built and what the
store records for the new collection). Loading models is the caller's (the CLI loads one per command with a
spinner, the server once per model for every collection on it). Knows neither the CLI nor the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from memkit.engine import Engine, MemoryStore
from memkit.methods import build_method, canonical_name


class CollectionStore(MemoryStore, Protocol):
    """What the service layer asks of one collection's store beyond the engine's calls (``storage.Store``
    satisfies it)."""

    info: Any
    """The collection's record: ``name``, ``model_id``, ``model_revision``, ``method``, ``method_config``,
    ``key_dim``, ``created_at``."""

    def check_model(self, name: str, fingerprint: str) -> None:
        """Raise (``ModelMismatchError``) unless the model is the one the collection was built with."""

    def get_documents(self, doc_ids: Iterable[int]) -> dict:
        """Document id -> its stored row (``external_id``, ``timestamp``, ``source``, ...), for those it holds."""


def engine_for(store: CollectionStore, lm, *, batch_size: int = 8, write_batch: int = 64, method=None) -> Engine:
    """The engine over ``store`` with ``lm``: the store's method rebuilt from its recorded options, or ``method``
    when the caller has just built it (``new_collection``; a generator or slot model is not loaded twice);
    ``ModelMismatchError`` when ``lm`` is not the model the store was built with."""
    info = store.info
    store.check_model(lm.name, lm.fingerprint)
    if method is None:
        method = build_method(info.method, lm, info.method_config)
    return Engine(lm, method, store, batch_size=batch_size, write_batch=write_batch)


@dataclass
class NewCollection:
    """A method built for a new collection and what the store records of it (``spec``: the keyword arguments of
    ``Store.create`` and ``StoreRoot.create_collection``)."""

    method: object
    spec: dict


def new_collection(lm, method: str, options: dict, *, model_id: str | None = None,
                   revision: str | None = None) -> NewCollection:
    """Builds ``method`` (a name or alias) with ``options`` for ``lm`` (a ``ConfigError`` names a bad option) and
    says what a new collection records: the model as given (``model_id``, default the model's own name), its
    revision and fingerprint, the method's canonical name, its resolved options and key dimension."""
    name = canonical_name(method)
    built = build_method(name, lm, dict(options))
    spec = dict(model_id=model_id or lm.name, model_revision=revision, model_fingerprint=lm.fingerprint,
                method=name, method_config=built.config_dict(), key_dim=built.key_dim)
    return NewCollection(built, spec)
