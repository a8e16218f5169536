"""The synthetic world: fictional persons and organisations whose facts no pretrained LM knows.

Modules, from the bottom up: ``names`` (invented names, value pools, the name-to-split rule), ``entities``
(``WorldConfig``, ``build_world``), ``templates`` and ``render`` (documents), ``questions`` (questions with
gold answers and gold documents), ``examples`` (QA training texts for the world LM), ``export`` (JSONL for
``memkit ingest``, the world as a ``Benchmark``). ``python -m experiments.world export|stats`` is the CLI.
"""
