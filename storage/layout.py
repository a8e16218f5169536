"""Where things live inside a store directory, and the ``store.json`` marker that makes a directory a store.

Owns: the file names of a store (``store.json``, ``memkit.db``, ``blobs/``, ``index/``, ``write.lock``), reading
and writing the marker ``{"format": 1, "db_url": null | "<sqlalchemy url>"}`` and the database URL it implies.
Knows nothing of SQL tables, FAISS, blobs' contents or models.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from storage.blobs import BLOB_DIR
from storage.files import DIR_MODE, read_regular, write_atomic
from storage.errors import NotAStoreError, StoreExistsError, StoreFormatError
from storage.lock import LOCK_FILE

FORMAT = 1
MARKER = "store.json"
DB_FILE = "memkit.db"
INDEX_DIR = "index"
MARKER_MAX_BYTES = 1 << 16
"""``store.json`` is a few lines; anything larger is not a marker memkit wrote."""


@dataclass(frozen=True)
class StoreLayout:
    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def db_file(self) -> Path:
        return self.root / DB_FILE

    @property
    def blob_dir(self) -> Path:
        return self.root / BLOB_DIR

    @property
    def index_dir(self) -> Path:
        return self.root / INDEX_DIR

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    def index_file(self, collection_id: int) -> Path:
        return self.index_dir / f"{collection_id}.faiss"

    def default_db_url(self) -> str:
        return f"sqlite:///{self.db_file.resolve()}"

    def read_marker(self) -> dict:
        """The marker's contents; ``NotAStoreError`` when the directory is not a store."""
        if not self.root.is_dir():
            raise NotAStoreError(self.root)
        try:
            marker = json.loads(read_regular(self.marker, MARKER_MAX_BYTES))
        except FileNotFoundError:
            raise NotAStoreError(self.root) from None
        except (OSError, ValueError) as e:
            raise NotAStoreError(self.root, f"{self.marker} is unreadable ({e}); it is not a valid memkit store") from e
        if not isinstance(marker, dict) or not isinstance(marker.get("format"), int):
            raise NotAStoreError(self.root, f"{self.marker} has no format number; it is not a valid memkit store")
        if marker["format"] > FORMAT:
            raise StoreFormatError(
                f"store {self.root} has format {marker['format']}, newer than this memkit reads ({FORMAT}); "
                f"upgrade memkit"
            )
        return marker

    def db_url(self, marker: dict) -> str:
        return marker.get("db_url") or self.default_db_url()

    def write_marker(self, db_url: str | None) -> None:
        write_atomic(self.marker, json.dumps({"format": FORMAT, "db_url": db_url}, indent=2).encode() + b"\n")

    def claim_empty(self) -> bool:
        """Checks that a store may be created here and makes the directory; True if it did not exist."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise NotAStoreError(root, f"{root} is a file, not a directory; choose another --store")
        if self.marker.exists():
            raise StoreExistsError(root)
        if root.is_dir() and any(root.iterdir()):
            raise NotAStoreError(root, f"directory {root} exists and is not empty; choose another --store")
        made = not root.exists()
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        return made

    def remove_contents(self, *, remove_root: bool) -> None:
        """Undoes a failed create: removes everything inside the (formerly empty) root, and the root if new."""
        if remove_root:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for child in self.root.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
