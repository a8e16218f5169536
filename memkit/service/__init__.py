"""The service layer under every front door (the CLI, the HTTP server, the benchmark runner).

Owns: opening a collection (its model checked against the store, its method built, the engine wired:
``collections.py``), what a new collection records (``collections.new_collection``), and the views of what
memkit returns (``views.py``: one answer view with sources, external ids, timestamps, merge weights and timings;
one document view; one collection view). Errors are the domain's own (``memkit.errors``, ``storage.errors``), each
carrying its exit code, HTTP status and code, so a front door only formats them.

Lives in the library because the front doors' rooms must not know each other (the server imports no CLI) and
``storage`` must know no model; it keeps the library's rule, knowing nothing of ``storage`` itself: a front
door opens the store and hands it in, and the calls made of it are the ``CollectionStore`` protocol
(``collections.py``), which ``storage.Store`` satisfies structurally. Knows neither the CLI nor the server.
"""
