"""memkit's HTTP service: ``memkit serve``.

Owns: the FastAPI application (``app.py``: the native API, ``openai_api.py``: the OpenAI-compatible routes), what a
running server holds (``runtime.py``: collections, models loaded once, batched asks, the one writer, jobs), its
settings (``config.py``), errors in one shape (``errors.py``), the guards every request passes (``guards.py``:
API key, body size) and its Prometheus metrics (``metrics.py``). Wires ``storage`` into ``memkit`` as the CLI
does; knows no maths.
"""
