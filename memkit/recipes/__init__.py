"""Training recipes on any data: the adapter generator and the slot model for any frozen LM, as library code
behind one front door (``memkit train``).

``data`` resolves data specs into item streams, held-out items and a corpus (the datasets through
``memkit.datasets``; ``world`` specs through a ``WorldSource`` the caller hands in, since the synthetic world is an
experiment the library does not know); ``adapter`` and ``slots`` are the recipes (build or continue a model,
calibrate, probe, train, save), over the one loop of ``memkit.training``; ``common`` holds what they share.
"""
