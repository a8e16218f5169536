"""Datasets as memkit reads them, for training and for benchmarks: the one shape every dataset takes
(``records``: ``Benchmark`` of ``SourceDocument`` (``bench_document``) and ``BenchQuestion``), the loaders of the public datasets and
memkit's own English set (``loaders``), and SQuAD-style scoring (``metrics``).

Library code because ``memkit train`` (``memkit.recipes``) reads these datasets; the benchmark harness
(``experiments.bench``) imports them from here. Knows nothing of models, methods or storage; reads local files
only, never the network.
"""
