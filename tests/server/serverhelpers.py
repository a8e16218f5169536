"""Running ``memkit serve`` in a subprocess for the server tests: start it on a free loopback port, wait until
it answers, stop it (SIGTERM, then SIGKILL), and read what it logged.

The server is started as ``python -m cli.main --store STORE serve --port 0 ...``; with port 0 it prints
``memkit serving STORE at http://127.0.0.1:PORT (pid N; API at /docs)`` on stderr once it listens, and the URL is
taken from that line. Its stdout and stderr go to a log file (never a pipe nobody reads, which could fill and
block the server).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"memkit serving .* at (http://127\.0\.0\.1:(\d+)) \(pid (\d+); API at /docs\)")
START_TIMEOUT_S = 120.0
SERVER_TZ = "Asia/Tokyo"
RAG_OPTIONS = {"chunk_tokens": 32, "chunk_overlap": 4, "max_new_tokens": 8}
"""Options of the collections the tests make: short answers keep a tiny model's generation quick."""


def command(store: Path | str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "--store", str(store), *map(str, args)]


def server_env() -> dict[str, str]:
    """The environment of a server subprocess: no key from the outside, nothing from the network, one thread
    for torch (the machine running the tests may have few cores; the tests' own process needs one), and a local
    time zone far from UTC, so that a time the server reads or writes in local time instead of UTC shows."""
    env = {k: v for k, v in os.environ.items() if k not in ("MEMKIT_API_KEY", "MEMKIT_STORE")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", TZ=SERVER_TZ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


class ServerProcess:
    """One ``memkit serve`` subprocess."""

    def __init__(self, store: Path, args: tuple[str, ...], log_path: Path, api_key: str | None = None):
        self.store = Path(store)
        self.args = args
        self.log_path = log_path
        self.api_key = api_key
        self.url: str | None = None
        self.port: int | None = None
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(command(store, "serve", "--port", "0", "--log-level", "warning", *args),
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=REPO, env=server_env())

    # ---- what it said ----------------------------------------------------------------------------------------
    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> "ServerProcess":
        """Waits for the 'memkit serving ... at URL' line, then for /healthz to answer 200."""
        end = time.monotonic() + timeout
        while self.url is None:
            match = LISTENING.search(self.log())
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
                assert int(match.group(3)) == self.proc.pid, self.log()
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} before listening:\n{self.log()}")
            if time.monotonic() > end:
                self.kill()
                raise RuntimeError(f"the server did not start within {timeout} s:\n{self.log()}")
            time.sleep(0.1)
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"/healthz did not answer 200:\n{self.log()}")
            time.sleep(0.1)

    # ---- talking to it --------------------------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, *, auth: bool = True, timeout: float = 120.0, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers() if auth else {}, timeout=timeout, **kw)

    # ---- stopping it ----------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, and the exit code once it has exited (None when it had not within ``timeout``: then it is
        killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()

    def stop(self) -> None:
        """Teardown: SIGTERM, SIGKILL when that did not end it."""
        try:
            self.terminate()
        finally:
            self.kill()


def start_server(store: Path | str, *args: str, log_dir: Path, api_key: str | None = None,
                 wait: bool = True) -> ServerProcess:
    """A ``memkit serve`` of ``store`` on a free loopback port (127.0.0.1, port 0), listening when it returns."""
    log_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(log_dir.glob("server-*.log")))
    full = (*args, "--api-key", api_key) if api_key else args
    server = ServerProcess(Path(store), tuple(map(str, full)), log_dir / f"server-{n}.log", api_key=api_key)
    if wait:
        try:
            server.wait_listening()
        except BaseException:
            server.stop()
            raise
    return server


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    """The job once it is no longer queued or running."""
    end = time.monotonic() + timeout
    while True:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < end, f"job {job_id} still {job['status']} after {timeout} s: {job}"
        time.sleep(0.05)


def start_job(client: httpx.Client, docs: list[dict], collection: str = "default", timeout: float = 60.0) -> str:
    """Posts ``docs`` as an ingest job (not waiting) and returns its id once the writer has taken it up."""
    r = client.post(f"/collections/{collection}/documents", json=docs)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    end = time.monotonic() + timeout
    while client.get(f"/jobs/{job_id}").json()["status"] == "queued":
        assert time.monotonic() < end
        time.sleep(0.02)
    return job_id


def error_of(response: httpx.Response, status: int) -> dict:
    """The error object of a response that must be ``status`` with the API's error shape."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "code"}, err
    assert isinstance(err["message"], str) and err["message"] and "\n" not in err["message"], err
    assert "Traceback" not in err["message"]
    return err
