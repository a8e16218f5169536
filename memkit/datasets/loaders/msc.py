"""Multi-Session Chat (MSC) as a memory benchmark: earlier sessions are the memory, the next turn the answer.

Owns: reading one MSC dialogue file (``msc_dialogue/session_N/{train,valid,test}.txt``, one JSON object
per line with ``dialog``, ``previous_dialogs``, ``personas``, ``init_personas`` and ``metadata``) into a
``Benchmark``. Knows nothing of models, methods or storage.

Mapping, per line (an episode, keyed by ``metadata.initial_data_id``):
  * each earlier session in ``previous_dialogs`` becomes one document ``"<episode>/session-<k>"`` (k from 1),
    its turns joined one per line as ``"Speaker 1: ..."`` / ``"Speaker 2: ..."`` (a turn's ``id`` names the
    speaker; without one, speakers alternate starting with Speaker 1); ``time_num`` / ``time_unit`` (the
    time that passed before the next session) go to ``meta``;
  * each turn ``i >= 1`` of the current session ``dialog`` becomes a question: the current session so far,
    one turn per line, then the next speaker's label (``"...\\nSpeaker 2:"``); the gold answer is that turn's
    text, scored by F1 as in the MSC papers; the gold documents are all of the episode's earlier sessions;
    the type is ``"session_<n>"`` (n = earlier sessions + 1); ``personas`` and the episode id go to ``meta``.
``max_turns`` caps the questions per episode (the first turns); ``limit`` keeps the first N questions.
"""

from __future__ import annotations

from pathlib import Path

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from memkit.documents import SourceDocument
from memkit.datasets.loaders.common import (
    DatasetError, check_count, field, iter_jsonl, needed_documents, require_path, take,
)

NAME = "msc"
EXPECTED = ("an MSC dialogue file (msc_dialogue/session_N/test.txt): one JSON object per line with "
            "dialog [{id, text}], previous_dialogs [{dialog [{text}], time_num, time_unit}], personas, metadata")
_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")


def load(path: str | Path, *, limit: int | None = None, split: str = "test",
         max_turns: int | None = None) -> Benchmark:
    """Read one session file (or ``<split>.txt`` in a ``session_N`` directory) into documents and questions."""
    limit = check_count(NAME, "limit", limit)
    max_turns = check_count(NAME, "max_turns", max_turns)
    path = require_path(NAME, path, EXPECTED)
    if path.is_dir():
        found = next((path / f"{split}{s}" for s in _SUFFIXES if (path / f"{split}{s}").is_file()), None)
        if found is None:
            raise DatasetError(NAME, path, f"no {split}.txt in the directory",
                               expected=f"{EXPECTED}; or split=train|valid|test")
        path = found

    documents: list[SourceDocument] = []
    questions: list[BenchQuestion] = []
    episodes: dict[str, int] = {}
    for where, obj in iter_jsonl(NAME, path, EXPECTED):
        episode = _episode_id(obj, where, episodes)
        docs, personas = _history(obj, episode, path, where), obj.get("personas")
        documents.extend(docs)
        turns = _turns(field(obj, "dialog", list, dataset=NAME, path=path, where=where, expected=EXPECTED),
                       path, f"{where} dialog")
        last = len(turns) if max_turns is None else min(len(turns), max_turns + 1)
        for i in range(1, last):
            speaker, text = turns[i]
            context = "\n".join(f"{s}: {t}" for s, t in turns[:i])
            questions.append(BenchQuestion(
                id=f"{episode}/turn-{i}", question=f"{context}\n{speaker}:", answers=[text],
                doc_ids=[d.external_id for d in docs], type=f"session_{len(docs) + 1}",
                meta={"episode": episode, "turn": i, "speaker": speaker, "personas": personas}))
    if not questions:
        raise DatasetError(NAME, path, "no episode has a current session of two or more turns", expected=EXPECTED)

    kept = take(questions, limit)
    meta = {"path": str(path), "options": {"limit": limit, "split": split, "max_turns": max_turns}}
    return Benchmark(name=NAME, documents=needed_documents(documents, kept), questions=kept, meta=meta)


def _episode_id(obj: dict, where: str, episodes: dict[str, int]) -> str:
    metadata = obj.get("metadata")
    raw = metadata.get("initial_data_id") if isinstance(metadata, dict) else None
    base = str(raw) if raw not in (None, "") else where.replace(" ", "-")
    episodes[base] = episodes.get(base, 0) + 1
    return base if episodes[base] == 1 else f"{base}~{episodes[base]}"


def _history(obj: dict, episode: str, path: Path, where: str) -> list[SourceDocument]:
    sessions = field(obj, "previous_dialogs", list, dataset=NAME, path=path, where=where, expected=EXPECTED)
    docs = []
    for k, session in enumerate(sessions, start=1):
        swhere = f"{where} previous_dialogs[{k - 1}]"
        turns = _turns(field(session, "dialog", list, dataset=NAME, path=path, where=swhere, expected=EXPECTED),
                       path, swhere)
        if not turns:
            raise DatasetError(NAME, path, "an earlier session has no turns", where=swhere, expected=EXPECTED)
        meta = {"episode": episode, "session": k}
        meta.update({key: session[key] for key in ("time_num", "time_unit") if key in session})
        docs.append(bench_document(id=f"{episode}/session-{k}", text="\n".join(f"{s}: {t}" for s, t in turns),
                                  source=f"msc:{episode}", meta=meta))
    return docs


def _turns(dialog: list, path: Path, where: str) -> list[tuple[str, str]]:
    turns = []
    for i, turn in enumerate(dialog):
        twhere = f"{where}[{i}]"
        text = field(turn, "text", str, dataset=NAME, path=path, where=twhere, expected=EXPECTED, nonempty=True)
        speaker = turn.get("id")
        if not (isinstance(speaker, str) and speaker.strip()):
            speaker = f"Speaker {i % 2 + 1}"
        turns.append((speaker.strip(), text.strip()))
    return turns
