"""A server's settings, checked once when it starts.

Owns: ``ServerConfig`` and the rules it enforces: off loopback an API key is required; a collection may be built
only from a model or option path the operator allowed (``--allow-path``), the packaged models, or a model a
collection of the store already uses, so no request makes the server read a path it was not given.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from memkit.errors import ConfigError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    store: Path
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    device: str = "auto"
    create_store: bool = True
    max_body_bytes: int = 64 * 1024 * 1024
    max_queued_bytes: int | None = None
    """Most bytes of documents waiting for the writer (default: 4 x ``max_body_bytes``); past it ingests get 503."""
    max_request_documents: int = 100_000
    max_question_chars: int = 4096
    max_batch: int = 32
    batch_wait_ms: float = 10.0
    ingest_batch: int = 8
    cors_origins: list[str] = field(default_factory=list)
    allow_paths: list[Path] = field(default_factory=list)

    def __post_init__(self):
        self.store = Path(self.store).expanduser()
        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(f"binding to {self.host} (not loopback) needs an API key: pass --api-key KEY or set "
                              f"MEMKIT_API_KEY; every route but /healthz then asks for it")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ConfigError("the API key must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        for name, value, low in (("--max-body-bytes", self.max_body_bytes, 1024),
                                 ("--max-question-chars", self.max_question_chars, 1),
                                 ("--max-batch", self.max_batch, 1), ("--ingest-batch", self.ingest_batch, 1)):
            if value < low:
                raise ConfigError(f"{name} must be at least {low}, not {value}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"--batch-wait-ms must be 0 or more, not {self.batch_wait_ms}")
        self.allow_paths = [Path(p).expanduser().resolve() for p in self.allow_paths]
        if self.max_queued_bytes is None:
            self.max_queued_bytes = 4 * self.max_body_bytes

    def allowed(self, path: Path, known: list[str]) -> bool:
        from memkit.packaged import MODELS

        path = path.resolve()
        roots = [*self.allow_paths, MODELS,
                 *(Path(k).resolve() for k in known if Path(k).exists())]
        return any(path == r or r in path.parents for r in roots)

    def check_paths(self, model: str, options: dict, known: list[str]) -> None:
        """Refuses (``ConfigError``) a model or option value naming a path on this machine that the operator did
        not allow; hub ids (not paths here) pass."""
        for what, value in [("model", model), *((f"option {k}", v) for k, v in options.items())]:
            if not isinstance(value, str) or not value:
                continue
            path = Path(value).expanduser()
            looks_like_path = path.is_absolute() or value.startswith(("./", "../", "~")) or value in (".", "..")
            if (looks_like_path or path.exists()) and not (path.exists() and self.allowed(path, known)):
                raise ConfigError(f"{what} {value!r} is a path this server was not allowed to read; start it "
                                  f"with --allow-path DIR to allow one")
