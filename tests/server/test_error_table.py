"""One error table: every domain error class (``memkit.errors``, ``storage.errors``) carries its CLI exit code, HTTP
status and machine code, and the server's mapping only reads them."""

from __future__ import annotations

import inspect

import pytest

import memkit.errors as library
import storage.errors as store
from server.errors import from_library


def error_classes():
    for module, base in ((library, library.MemkitError), (store, store.StoreError)):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, base) and cls.__module__ == module.__name__:
                yield cls


@pytest.mark.parametrize("cls", list(error_classes()), ids=lambda c: c.__name__)
def test_every_error_class_says_how_each_front_door_shows_it(cls):
    assert isinstance(cls.exit_code, int) and 1 <= cls.exit_code <= 4
    assert cls.http_status in {404, 409, 422, 500, 503}
    assert isinstance(cls.code, str) and cls.code and cls.code == cls.code.lower()


def test_the_server_maps_an_error_by_what_it_carries():
    err = from_library(library.NotFoundError("no job 'x'", code="job_not_found"))
    assert (err.status, err.code, err.message) == (404, "job_not_found", "no job 'x'")
    err = from_library(library.UnavailableError("stopping", code="server_stopping"))
    assert (err.status, err.code) == (503, "server_stopping")
    err = from_library(library.ConfigError("option x of method rag must be at least 1"))
    assert (err.status, err.code) == (422, "invalid_config")
    err = from_library(store.DocumentNotFoundError(7, 9))
    assert (err.status, err.code) == (404, "document_not_found")
    assert err.message == "no document with id 7, 9 in this collection; GET its /documents lists the ids"
    assert "`memkit ls` shows the ids" in str(store.DocumentNotFoundError(7))          # the CLI's wording
    err = from_library(store.InvalidCollectionName("a b"))
    assert (err.status, err.code) == (422, "invalid_input")
    err = from_library(RuntimeError("secret detail"))
    assert (err.status, err.code) == (500, "internal_error") and "secret" not in err.message
