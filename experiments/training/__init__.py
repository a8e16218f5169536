"""Training recipes on any data: the adapter generator and the slot model for any frozen LM.

``data`` resolves data specs into item streams, held-out items and a corpus; ``adapter`` and ``slots`` are the
recipes (build or continue a model, calibrate, probe, train, save); ``common`` holds what they share. The
synthetic world is one data source among others (``--data world``).
"""
