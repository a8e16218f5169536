"""The vector index: exact inner-product search over memory keys, ids equal to ``memories.id``.

Owns: a FAISS ``IndexIDMap2(IndexFlatIP(dim))`` in memory, and its file pair ``<name>.faiss`` (the serialised
index) + ``<name>.json`` (the sidecar: ``{"generation": N, "dim": D, "count": C, "sha256": H, "removed": [ids]}``),
both written atomically. ``load`` checks the file's bytes against the sidecar's SHA-256 before FAISS reads them,
so a damaged or altered file is never trusted; ``removed`` lists ids deleted since the file was written (a
removal need not rewrite a large file; ``load`` drops them). The index is a cache of the keys kept in SQL; the
store decides when it is stale and rebuilds it. Keys are expected to be
L2-normalised by the caller (inner product is then cosine); nothing here normalises. When faiss was built with
GPU support and a CUDA device is present, large indexes are searched through a GPU copy; the CPU index stays
the one that is mutated and saved. Knows nothing of SQL, documents, blobs or models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import faiss
import numpy as np

from storage.files import open_regular, read_regular, write_atomic, write_atomic_with

log = logging.getLogger(__name__)

GPU_MIN_VECTORS = 20_000
"""Below this many vectors CPU flat search takes well under a millisecond; copying to a GPU is not worth it."""
GPU_MAX_K = 2048
"""FAISS GPU flat search refuses larger k; such searches run on the CPU index."""


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


class IndexFileError(ValueError):
    """An index file that cannot be trusted: unreadable, failing its checksum, or not what its sidecar says."""


SIDECAR_MAX_BYTES = 64 << 20
"""A sidecar is a few numbers and the ids removed since its index file was written; past this it is not one."""


def read_sidecar(path: Path) -> dict | None:
    """The sidecar of index file ``path`` (``generation``, ``dim``, ``count``, ``sha256``, ``removed``), or None
    if absent, unreadable or of another shape (an index file without a checksum is not trusted)."""
    try:
        meta = json.loads(read_regular(sidecar_path(path), SIDECAR_MAX_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), int) for k in ("generation", "dim", "count")):
        return None
    removed = meta.setdefault("removed", [])
    if not isinstance(meta.get("sha256"), str) or not isinstance(removed, list) or \
            not all(isinstance(i, int) for i in removed):
        return None
    return meta


def index_file_present(path: Path) -> bool:
    """Whether something is at the index file's path (whatever it is; a link is not followed)."""
    try:
        os.lstat(path)
        return True
    except OSError:
        return False


def _read_exactly(f, n: int) -> bytes:
    """``n`` bytes of ``f``, fewer only at its end (a raw file may return less than asked)."""
    parts, got = [], 0
    while got < n:
        part = f.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def write_sidecar(path: Path, meta: dict) -> None:
    write_atomic(sidecar_path(path), json.dumps(meta).encode())


class VectorIndex:
    """Exact maximum-inner-product search over float32 vectors of one dimension, keyed by int64 ids."""

    def __init__(self, dim: int, *, use_gpu: bool | None = None):
        if dim <= 0:
            raise ValueError(f"index dimension must be positive, got {dim}")
        self.dim = dim
        self._cpu = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._gpu = None  # search copy on the GPU, rebuilt lazily after any change
        self._gpu_resources = None
        self._frequencies: np.ndarray | None = None  # cache of key_frequencies, dropped on any change

    @property
    def ntotal(self) -> int:
        return int(self._cpu.ntotal)

    def ids(self) -> np.ndarray:
        """Every id in the index (int64, in insertion order)."""
        return faiss.vector_to_array(self._cpu.id_map).astype(np.int64, copy=False)

    def _vectors(self, vecs: np.ndarray) -> np.ndarray:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape [n, {self.dim}], got {list(vecs.shape)}")
        return vecs

    def add(self, ids, vecs: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vecs = self._vectors(vecs)
        if len(ids) != len(vecs):
            raise ValueError(f"{len(ids)} ids for {len(vecs)} vectors")
        if len(ids) == 0:
            return
        self._cpu.add_with_ids(vecs, ids)
        self._gpu = None
        if self._frequencies is not None:          # kept up to date, never recounted over the whole index
            self._frequencies = self._frequencies + (vecs != 0).sum(0)

    def remove(self, ids) -> int:
        """Removes the given ids (unknown ids are ignored); returns how many vectors went."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return 0
        self._gpu = None
        if self._frequencies is not None:
            gone = []
            for i in dict.fromkeys(int(i) for i in ids):
                try:
                    gone.append(self._cpu.reconstruct(i))
                except RuntimeError:               # not in the index
                    pass
            if gone:
                self._frequencies = self._frequencies - (np.stack(gone) != 0).sum(0)
        return int(self._cpu.remove_ids(ids))

    def key_frequencies(self, block: int = 8192) -> np.ndarray:
        """Per dimension, how many vectors have a non-zero entry there (int64 ``[dim]``): the document
        frequencies a sparse key's query weighting needs. Counted over the index once, then kept up to date by
        every ``add`` and ``remove``."""
        if self._frequencies is None:
            flat = faiss.downcast_index(self._cpu.index)
            counts = np.zeros(self.dim, dtype=np.int64)
            for start in range(0, self.ntotal, block):
                counts += (flat.reconstruct_n(start, min(block, self.ntotal - start)) != 0).sum(0)
            self._frequencies = counts
        return self._frequencies

    def search(self, queries: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The ``k`` best ids per query row, best first: ``(scores, ids)``, one 1-D array per query.

        Rows hold fewer than ``k`` results when the index has fewer vectors (FAISS's ``-1`` fillers are dropped).
        """
        queries = self._vectors(queries)
        k = min(int(k), self.ntotal)
        if k <= 0 or len(queries) == 0:
            n = len(queries)
            return [np.empty(0, np.float32)] * n, [np.empty(0, np.int64)] * n
        scores, ids = self._search_index(k).search(queries, k)
        keep = ids >= 0
        return [s[m] for s, m in zip(scores, keep)], [i[m] for i, m in zip(ids, keep)]

    def _search_index(self, k: int):
        if not self._use_gpu or self.ntotal < GPU_MIN_VECTORS or k > GPU_MAX_K:
            return self._cpu
        if self._gpu is None:
            try:
                if self._gpu_resources is None:
                    self._gpu_resources = faiss.StandardGpuResources()
                self._gpu = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._cpu)
            except Exception as e:  # a faiss build or device that cannot host this index: stay on the CPU
                log.warning("GPU index unavailable, searching on the CPU: %s", e)
                self._use_gpu = False
                return self._cpu
        return self._gpu

    def save(self, path: Path, generation: int) -> None:
        """Writes the index to ``path`` and its sidecar json, each atomically (index first, then sidecar).

        A crash between the two leaves a sidecar with the old generation (or checksum), which marks the file
        stale.
        """
        path = Path(path)
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        digest = write_atomic_with(path, lambda tmp: faiss.write_index(self._cpu, str(tmp)))  # streamed to disk
        write_sidecar(path, {"generation": int(generation), "dim": self.dim, "count": self.ntotal,
                             "sha256": digest, "removed": []})

    @classmethod
    def load(cls, path: Path, meta: dict, *, use_gpu: bool | None = None) -> VectorIndex:
        """Reads an index written by ``save``, described by its sidecar ``meta``; raises ``IndexFileError`` (one
        line, no FAISS message) for a file whose bytes fail the checksum or that is not such an index. The ids
        of ``meta["removed"]`` are dropped."""
        try:
            f = open_regular(Path(path))
        except OSError as e:
            raise IndexFileError(f"cannot be read ({e.strerror or e})") from None
        with f:  # one open file for both passes: a writer's rename cannot swap it between them
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            if digest.hexdigest() != meta["sha256"]:  # checked before FAISS reads a byte of it
                raise IndexFileError("failed its checksum (its bytes changed since memkit wrote it)")
            f.seek(0)
            try:  # FAISS reads straight from the file: the index is held in memory once
                index = faiss.read_index(faiss.PyCallbackIOReader(lambda n: _read_exactly(f, n)))
            except RuntimeError:
                raise IndexFileError("is not a readable FAISS index") from None
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexFileError(f"holds a {type(index).__name__}, not the IndexIDMap2 memkit writes")
        if index.d != meta["dim"] or index.ntotal != meta["count"]:
            raise IndexFileError(f"holds {index.ntotal} vectors of dimension {index.d}; its sidecar says "
                                 f"{meta['count']} of dimension {meta['dim']}")
        out = cls(index.d, use_gpu=use_gpu)
        out._cpu = index
        out.remove(meta["removed"])
        return out

    def vectors_of(self, ids) -> np.ndarray:
        """The stored vectors of ``ids`` (``[n, dim]``), for checks against the keys kept elsewhere."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        return np.stack([self._cpu.reconstruct(int(i)) for i in ids]) if len(ids) else np.empty((0, self.dim), np.float32)

    @classmethod
    def build(cls, dim: int, ids, vecs: np.ndarray, *, use_gpu: bool | None = None) -> VectorIndex:
        index = cls(dim, use_gpu=use_gpu)
        index.add(ids, vecs)
        return index
