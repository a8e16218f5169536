"""``memkit ask`` and ``memkit ingest`` against a running ``memkit serve`` (``--server URL``) instead of loading
the model in this process.

Owns: the HTTP client side (httpx): sending a question or batches of documents, following an ingest job, and
turning the server's error shape into one line and an exit code (2 for a refused request, 3 when the server
cannot be reached or fails). Knows no maths.
"""

from __future__ import annotations

import json
import time

from memkit.errors import MemkitError

BATCH_DOCS = 256
BATCH_BYTES = 4 * 1024 * 1024
"""An ingest is sent in requests of at most this many documents and bytes (under the server's default body limit)."""


class RemoteError(MemkitError):
    exit_code = 3


class RemoteRefused(MemkitError):
    exit_code = 2


class Remote:
    def __init__(self, url: str, api_key: str | None, timeout: float = 600.0):
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, path: str, **kw) -> dict:
        import httpx

        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the memkit server at {self.url}: {exc}") from None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400:
            message = (data or {}).get("error", {}).get("message") if isinstance(data, dict) else None
            text = message or r.text[:200] or r.reason_phrase
            kind = RemoteRefused if r.status_code < 500 else RemoteError
            raise kind(f"the server refused the request ({r.status_code}): {text}")
        if not isinstance(data, dict):
            raise RemoteError(f"the server at {self.url} answered {r.status_code} with no JSON object; is it memkit?")
        return data

    def ask(self, collection: str, question: str, top_k: int | None, as_of: str | None) -> dict:
        body = {"question": question}
        if top_k is not None:
            body["top_k"] = top_k
        if as_of is not None:
            body["as_of"] = as_of
        return self.call("POST", f"/collections/{collection}/ask", json=body)

    def ingest(self, collection: str, body: bytes, stream: str | None, *, wait_s: float = 3600.0) -> dict:
        """Sends one batch (a JSON list) as a job and follows it to its end; returns the finished job."""
        params = {"skip_invalid": "true", **({"stream": stream} if stream is not None else {})}
        job = self.call("POST", f"/collections/{collection}/documents", params=params, content=body,
                        headers={"Content-Type": "application/json"})
        end = time.monotonic() + wait_s
        while job.get("status") in ("queued", "running") and time.monotonic() < end:
            time.sleep(0.2)
            job = self.call("GET", f"/jobs/{job['id']}")
        return job


def document_json(doc) -> bytes:
    """A ``SourceDocument`` as one JSON object of the server's ingest body (its meta, then its own fields, as a
    JSONL line gives them); its stream travels as the request's ``stream``."""
    out = {**doc.meta, "text": doc.text, "source": doc.source}
    if doc.timestamp is not None:
        out["timestamp"] = doc.timestamp
    if doc.external_id is not None:
        out["id"] = doc.external_id
    return json.dumps(out, ensure_ascii=False).encode()


def batches(docs):
    """``(stream, body)``: documents of one stream at a time as JSON lists within ``BATCH_DOCS`` documents and
    ``BATCH_BYTES`` bytes (a larger document goes alone)."""
    batch: list[bytes] = []
    size, stream = 0, None
    for doc in docs:
        item = document_json(doc)
        if batch and (doc.stream != stream or len(batch) >= BATCH_DOCS or size + len(item) > BATCH_BYTES):
            yield stream, b"[" + b",".join(batch) + b"]"
            batch, size = [], 0
        stream = doc.stream
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield stream, b"[" + b",".join(batch) + b"]"
