"""The vector index: maximum-inner-product search over memory keys, ids equal to ``memories.id``.

Owns: the FAISS index in memory, of the kind an ``IndexSpec`` names: ``flat`` (exact: ``IndexFlatIP``) or
``hnsw`` (approximate: ``IndexHNSWFlat`` with inner product; its graph grows with every add, needs no
training, and its recall is measured by ``experiments/bench/store_scale.py``), each wrapped in ``IndexIDMap2``;
``auto`` (the default) is flat while the vectors take at most ``AUTO_FLAT_BYTES`` and HNSW beyond (the keeper
switches when a write crosses it). An HNSW graph cannot drop a vector: a removed id becomes a tombstone, left
out of ``ids``, ``ntotal`` and search results, and the graph is rebuilt without them once they are a fifth of
it (``needs_compaction``). The file pair ``<name>.faiss`` (the serialised index) + ``<name>.json`` (the sidecar:
``{"generation": N, "dim": D, "count": C, "sha256": H, "removed": [ids], "kind": K, "params": {...}}``) is
written atomically. ``load`` checks the file's bytes against the sidecar's SHA-256 before FAISS reads them, so
a damaged or altered file is never trusted; ``removed`` lists ids deleted since the file was written (a removal
need not rewrite a large file; ``load`` drops them). The index is a cache of the keys kept in SQL; the keeper
decides when it is stale and catches it up or rebuilds it. Keys are expected to be L2-normalised by the
caller (inner product is then cosine); nothing here normalises. When faiss was built with GPU support and a
CUDA device is present, large flat indexes are searched through a GPU copy; the CPU index stays the one that
is mutated and saved. Knows nothing of SQL, documents, blobs or models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from storage.files import open_regular, read_regular, write_atomic, write_atomic_with

log = logging.getLogger(__name__)

GPU_MIN_VECTORS = 20_000
"""Below this many vectors CPU flat search takes well under a millisecond; copying to a GPU is not worth it."""
GPU_MAX_K = 2048
"""FAISS GPU flat search refuses larger k; such searches run on the CPU index."""


AUTO_FLAT_BYTES = 128 << 20
"""``auto`` keeps an exact flat index while its vectors take at most this many bytes (32,768 keys of 1,024
floats; a search then takes ~15 ms on 2 cores), and builds an HNSW graph beyond."""
COMPACT_FRACTION = 0.2
"""An HNSW index is rebuilt without its tombstones once they are this fraction of its vectors."""
KINDS = ("auto", "flat", "hnsw")


@dataclass(frozen=True)
class IndexSpec:
    """The vector index a collection asks for, kept in ``collections.index_spec``."""

    kind: str = "auto"
    """``auto`` (flat while small, then HNSW), ``flat`` (always exact) or ``hnsw`` (always approximate)."""
    m: int = 32
    """HNSW: links per vector (more: better recall, more memory: ``2 * m * 4`` bytes per vector)."""
    ef_construction: int = 80
    """HNSW: candidates kept while linking a new vector (more: a better graph, slower adds)."""
    ef_search: int = 96
    """HNSW: candidates kept while searching (more: better recall, slower searches); at least the k asked."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 4096:
                raise ValueError(f"index parameter {name} must be an integer from 2 to 4096, got {value!r}")

    @classmethod
    def from_dict(cls, data: dict | None) -> IndexSpec:
        if not data:
            return cls()
        unknown = sorted(set(data) - {"kind", "m", "ef_construction", "ef_search"})
        if unknown:
            raise ValueError(f"unknown index parameter(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    def kind_for(self, count: int, dim: int, current: str | None = None) -> str:
        """The kind of index to hold ``count`` vectors of ``dim`` (``flat`` or ``hnsw``); ``auto`` leaves an HNSW
        graph (``current``) for flat only below half the line, so writes around it do not rebuild every time."""
        if self.kind != "auto":
            return self.kind
        line = AUTO_FLAT_BYTES // 2 if current == "hnsw" else AUTO_FLAT_BYTES
        return "flat" if count * dim * 4 <= line else "hnsw"


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
    if meta.setdefault("kind", "flat") not in ("flat", "hnsw") or not isinstance(meta.setdefault("params", {}), dict):
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
    """Maximum-inner-product search over float32 vectors of one dimension, keyed by int64 ids: exact
    (``kind="flat"``) or through an HNSW graph (``kind="hnsw"``, with the ``spec``'s parameters)."""

    def __init__(self, dim: int, *, kind: str = "flat", spec: IndexSpec | None = None, use_gpu: bool | None = None):
        if dim <= 0:
            raise ValueError(f"index dimension must be positive, got {dim}")
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"an index is flat or hnsw, not {kind!r}")
        self.dim = dim
        self.kind = kind
        self.spec = spec or IndexSpec()
        self._cpu = faiss.IndexIDMap2(self._inner())
        self._use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._gpu = None  # search copy on the GPU, rebuilt lazily after any change
        self._gpu_resources = None
        self._frequencies: np.ndarray | None = None  # key_frequencies, counted once, then kept up to date
        self._dead: set[int] = set()  # tombstones: ids removed from an HNSW graph, which cannot drop them
        self._excluding = None  # (tombstone count, ids, IDSelectorBatch, IDSelectorNot) for searches

    def _inner(self):
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        inner = faiss.IndexHNSWFlat(self.dim, self.spec.m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = self.spec.ef_construction
        inner.hnsw.efSearch = self.spec.ef_search
        return inner

    @property
    def params(self) -> dict:
        """The parameters this index was built with (recorded in the sidecar)."""
        if self.kind == "flat":
            return {}
        return {"m": self.spec.m, "ef_construction": self.spec.ef_construction, "ef_search": self.spec.ef_search}

    @property
    def ntotal(self) -> int:
        """Vectors held, tombstones left out."""
        return int(self._cpu.ntotal) - len(self._dead)

    @property
    def tombstones(self) -> int:
        return len(self._dead)

    def needs_compaction(self) -> bool:
        return len(self._dead) > COMPACT_FRACTION * max(1, int(self._cpu.ntotal))

    def _all_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._cpu.id_map).astype(np.int64, copy=False)

    def ids(self) -> np.ndarray:
        """Every id in the index (int64, in insertion order), tombstones left out."""
        ids = self._all_ids()
        if self._dead:
            ids = ids[~np.isin(ids, np.fromiter(self._dead, np.int64, len(self._dead)))]
        return ids

    def max_id(self) -> int:
        """The largest id ever added and still held (tombstones included: ids are never reused), -1 if none."""
        ids = self._all_ids()
        return int(ids.max()) if len(ids) else -1

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
        if self._dead and not self._dead.isdisjoint(ids.tolist()):
            raise ValueError("an id removed from this index cannot be added again")
        self._cpu.add_with_ids(vecs, ids)
        self._gpu = None
        if self._frequencies is not None:          # kept up to date, never recounted over the whole index
            self._frequencies = self._frequencies + (vecs != 0).sum(0)

    def remove(self, ids) -> int:
        """Removes the given ids (unknown ids are ignored); returns how many vectors went. From an HNSW graph
        they become tombstones."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return 0
        self._gpu = None
        present = np.unique(ids[np.isin(ids, self._all_ids())])  # unknown ids are ignored
        if self._dead:
            present = present[~np.isin(present, np.fromiter(self._dead, np.int64, len(self._dead)))]
        if len(present) and self._frequencies is not None:
            self._frequencies = self._frequencies - (self.vectors_of(present) != 0).sum(0)
        if self.kind == "flat":
            return int(self._cpu.remove_ids(present))
        self._dead.update(present.tolist())
        return len(present)

    def rebuilt(self, kind: str | None = None, spec: IndexSpec | None = None) -> VectorIndex:
        """A new index of ``kind`` (this one's by default) with this one's live vectors: how tombstones are
        dropped and how a collection moves between flat and HNSW."""
        out = VectorIndex(self.dim, kind=kind or self.kind, spec=spec or self.spec, use_gpu=self._use_gpu)
        ids = self.ids()
        for start in range(0, len(ids), 65_536):
            part = ids[start:start + 65_536]
            out.add(part, self.vectors_of(part))
        return out

    def key_frequencies(self, block: int = 8192) -> np.ndarray:
        """Per dimension, how many vectors have a non-zero entry there (int64 ``[dim]``): the document
        frequencies a sparse key's query weighting needs. Counted over the index once, then kept up to date by
        every ``add`` and ``remove``."""
        if self._frequencies is None:
            inner = faiss.downcast_index(self._cpu.index)
            flat = inner if self.kind == "flat" else faiss.downcast_index(inner.storage)
            counts = np.zeros(self.dim, dtype=np.int64)
            total = int(self._cpu.ntotal)
            for start in range(0, total, block):
                counts += (flat.reconstruct_n(start, min(block, total - start)) != 0).sum(0)
            if self._dead:
                counts -= (self.vectors_of(sorted(self._dead)) != 0).sum(0)
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
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.spec.ef_search, k)
            if self._dead:  # the graph walks through tombstones but never returns them
                params.sel = self._selector()
            scores, ids = self._cpu.search(queries, k, params=params)
        else:
            scores, ids = self._search_index(k).search(queries, k)
        keep = ids >= 0
        return [s[m] for s, m in zip(scores, keep)], [i[m] for i, m in zip(ids, keep)]

    def _selector(self):
        """A FAISS selector of every id but the tombstones (kept until they change; FAISS holds no reference to
        the objects it is given, so they live here)."""
        if self._excluding is None or self._excluding[0] != len(self._dead):
            dead = np.fromiter(self._dead, np.int64, len(self._dead))
            batch = faiss.IDSelectorBatch(len(dead), faiss.swig_ptr(dead))
            self._excluding = (len(self._dead), dead, batch, faiss.IDSelectorNot(batch))
        return self._excluding[3]

    def _search_index(self, k: int):
        if self.kind != "flat" or not self._use_gpu or self.ntotal < GPU_MIN_VECTORS or k > GPU_MAX_K:
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
        digest = write_atomic_with(path, lambda tmp: self._write(tmp))
        write_sidecar(path, {"generation": int(generation), "dim": self.dim, "count": int(self._cpu.ntotal),
                             "sha256": digest, "removed": sorted(self._dead), "kind": self.kind,
                             "params": self.params})

    def _write(self, tmp: Path) -> None:
        """Streams the index to ``tmp`` through a Python file, so a failed write (a full disk) raises ``OSError``
        instead of FAISS's RuntimeError, or a message printed while a truncated file is kept."""
        with open(tmp, "wb") as f:
            try:
                faiss.write_index(self._cpu, faiss.PyCallbackIOWriter(f.write))
            except RuntimeError as e:
                cause = e.__context__ if isinstance(e.__context__, OSError) else None
                raise OSError(getattr(cause, "errno", None) or 5, f"writing the index failed: {cause or e}") from e
            f.flush()

    @classmethod
    def load(cls, path: Path, meta: dict, *, spec: IndexSpec | None = None,
             use_gpu: bool | None = None) -> VectorIndex:
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
        inner = faiss.downcast_index(index.index)
        kind = "hnsw" if isinstance(inner, faiss.IndexHNSWFlat) else "flat" if isinstance(inner, faiss.IndexFlatIP) \
            else type(inner).__name__
        if kind != meta["kind"]:
            raise IndexFileError(f"holds a {kind} index; its sidecar says {meta['kind']}")
        if index.d != meta["dim"] or index.ntotal != meta["count"]:
            raise IndexFileError(f"holds {index.ntotal} vectors of dimension {index.d}; its sidecar says "
                                 f"{meta['count']} of dimension {meta['dim']}")
        spec = spec or IndexSpec()
        if kind == "hnsw":
            spec = IndexSpec(kind=spec.kind, m=int(inner.hnsw.nb_neighbors(1)),
                             ef_construction=int(inner.hnsw.efConstruction), ef_search=spec.ef_search)
            inner.hnsw.efSearch = spec.ef_search
        out = cls(index.d, kind=kind, spec=spec, use_gpu=use_gpu)
        out._cpu = index
        out.remove(meta["removed"])
        return out

    def vectors_of(self, ids) -> np.ndarray:
        """The stored vectors of ``ids`` (``[n, dim]``), for checks against the keys kept elsewhere."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return np.empty((0, self.dim), np.float32)
        return np.stack([self._cpu.reconstruct(int(i)) for i in ids])

    @classmethod
    def build(cls, dim: int, ids, vecs: np.ndarray, *, kind: str = "flat", spec: IndexSpec | None = None,
              use_gpu: bool | None = None) -> VectorIndex:
        index = cls(dim, kind=kind, spec=spec, use_gpu=use_gpu)
        index.add(ids, vecs)
        return index
