"""Generated adapters: a trained generator turns a document's hidden states into a low-rank weight delta.

``config`` (AdapterConfig), ``state`` (AdapterState: per target layer an R x R sum that adds and subtracts),
``generator`` (the per-layer generator and its normalisation into a LowRankDelta), ``encode`` (documents read
in chunks, sequentially or in parallel). The method built on them is ``memkit.methods.adapter``.
"""
