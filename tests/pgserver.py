"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, ``postgres`` on loopback.

The server binaries are found in ``$MEMKIT_PG_BIN`` (a folder holding ``initdb`` and ``postgres``), else in the
newest ``/usr/lib/postgresql/<version>/bin`` (Debian, Ubuntu), else on ``PATH``. PostgreSQL refuses to run as
root, so as root the server runs as the system user ``memkit-pg`` (made with ``useradd`` when missing), which
owns the temporary folder. The server listens on 127.0.0.1 at a free port and on a unix socket inside that
folder, with nothing durable (``fsync`` off: the data is thrown away), and clients log in as ``memkit`` with a
random password (scram-sha-256 over TCP). ``PostgresServer.create_database`` makes a fresh database per test.
The server shuts down when the process that started it dies, however it dies (Linux's parent-death signal), so
a killed test run leaves no server behind; the folder such a run leaves is deleted by a later ``start``.

Used by the ``postgres_server`` and ``postgres_db`` fixtures in ``tests/conftest.py``; ``on_both_databases``
runs a CLI test whose store comes from a ``store_db`` fixture on SQLite and on PostgreSQL. Runnable alone for a
look around: ``python tests/pgserver.py`` starts one and prints its admin URL until Ctrl-C.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

on_both_databases = pytest.mark.parametrize(
    "store_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
"""A test run once with its store on SQLite and once on a fresh PostgreSQL database (marked ``postgres``)."""

SERVICE_USER = "memkit-pg"
SUPERUSER = "memkit"
START_TIMEOUT_S = 60.0
FOLDER_PREFIX = "memkit-pg-"
STALE_AFTER_S = 600.0
"""A server folder this old whose server is not running was left by a run that was killed: deleted."""
PR_SET_PDEATHSIG = 1


class PostgresUnavailable(RuntimeError):
    """The server binaries, the driver or a usable user are missing; the message says what to install."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``postgres``."""
    override = os.environ.get("MEMKIT_PG_BIN")
    if override:
        folder = Path(override)
        if not (folder / "initdb").is_file() or not (folder / "postgres").is_file():
            raise PostgresUnavailable(f"MEMKIT_PG_BIN={override} holds no initdb and postgres")
        return folder
    candidates = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        try:
            candidates.append((float(folder.parent.name), folder))
        except ValueError:
            continue
    for _, folder in sorted(candidates, reverse=True):
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).parent / "postgres").is_file():
        return Path(initdb).parent
    raise PostgresUnavailable("no PostgreSQL server found (apt-get install postgresql, or set MEMKIT_PG_BIN to the "
                              "folder holding initdb and postgres)")


def _service_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (this process's own user) unless running as root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", shell,
                           SERVICE_USER], capture_output=True, text=True)
    if made.returncode != 0 and "already exists" not in made.stderr:
        raise PostgresUnavailable(f"running as root, and could not create the user {SERVICE_USER} to run "
                                  f"PostgreSQL as: {made.stderr.strip()}")
    return pwd.getpwnam(SERVICE_USER)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    folder: Path
    port: int
    password: str
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    _count: int = 0

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, database: str = "postgres", *, password: str | None = None, port: int | None = None) -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database`` over TCP; another ``password`` or ``port`` for tests of
        what goes wrong."""
        secret = self.password if password is None else password
        return f"postgresql+psycopg://{self.user}:{secret}@{self.host}:{port or self.port}/{database}"

    def connect(self, database: str = "postgres"):
        """A psycopg connection (autocommit) for setting tests up and looking at what they left."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=database, autocommit=True, connect_timeout=10)

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template`` (which nobody may be connected to); returns its name
        (``drop_database`` removes it; ``stop`` removes the whole cluster)."""
        self._count += 1
        name = f"memkit_test_{self._count}_{secrets.token_hex(4)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        """Drops ``name``, ending any session still connected to it (a store a test left open)."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stops the server (fast shutdown, then a kill) and deletes its folder."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, no waiting for clients
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def start(bin_dir: Path | None = None) -> PostgresServer:
    """Makes a cluster in a new temporary folder and starts a server on it; waits until it accepts connections.
    ``PostgresUnavailable`` when something it needs is missing; ``RuntimeError`` with the server's log when it
    does not come up."""
    try:
        import psycopg  # noqa: F401 (the driver the tests and the store use)
    except ImportError:
        raise PostgresUnavailable("the psycopg driver is not installed (pip install -e '.[postgres]')") from None
    bin_dir = bin_dir or find_bin_dir()
    owner = _service_user()
    _remove_stale_folders()
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
    as_owner: dict = {}
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_owner = dict(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
    server = PostgresServer(bin_dir, folder, 0, secrets.token_urlsafe(16))
    try:
        pwfile = folder / "pwfile"
        pwfile.write_text(server.password + "\n")
        (folder / "socket").mkdir(mode=0o700)
        if owner is not None:
            for path in (pwfile, folder / "socket"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        done = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, cwd=folder, **as_owner,
        )
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        for attempt in range(3):  # a port found free may be taken before the server binds it
            server.port = _free_port()
            _launch(server, as_owner)
            if _wait_ready(server):
                return server
            if server.running():
                break
        raise RuntimeError(f"PostgreSQL did not start; its log ends:\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise


def _launch(server: PostgresServer, as_owner: dict) -> None:
    settings = {
        "listen_addresses": server.host,
        "port": str(server.port),
        "unix_socket_directories": str(server.socket_dir),
        "fsync": "off",  # a test server: nothing it holds must survive a crash of this machine
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "shared_buffers": "32MB",
        "logging_collector": "off",
    }
    args = [str(server.bin_dir / "postgres"), "-D", str(server.folder / "data")]
    for name, value in settings.items():
        args += ["-c", f"{name}={value}"]
    log = open(server.log_file, "ab")
    try:
        server.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=server.folder,
                                          start_new_session=True, preexec_fn=_dies_with(os.getpid()), **as_owner)
    finally:
        log.close()


def _dies_with(parent: int):
    """A ``preexec_fn`` (run in the child after it took the server's user) asking Linux for SIGINT, PostgreSQL's
    fast shutdown, when ``parent`` dies; elsewhere nothing (``stop`` still ends the server)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)

    return arm


def _remove_stale_folders() -> None:
    """Deletes server folders of earlier runs that were killed before they could (old, and no server running
    in them)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            if time.time() - folder.stat().st_mtime < STALE_AFTER_S or _server_running(folder / "data"):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _server_running(data: Path) -> bool:
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_ready(server: PostgresServer) -> bool:
    """True once the server accepts a login; False when it exits first (the log says why) or takes too long."""
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.running():
            server.process = None
            return False
        try:
            server.connect().close()
            return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    return False


if __name__ == "__main__":
    pg = start()
    print(pg.url(), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        pg.stop()
