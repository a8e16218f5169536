"""MetaICL as a memory benchmark: k demonstrations of a task are the document, test examples the questions.

Owns: reading MetaICL task JSONL (one object per line: ``task``, ``input``, ``output``, ``options``) into a
``Benchmark``. Two layouts are read:
  * the MetaICL ``data/`` directory (or one task folder in it): for each ``<task>_<k>_100_test.jsonl`` the
    demonstrations are the first k lines of ``<task>_<k>_<seed>_train.jsonl`` beside it, as MetaICL pairs
    them (its test files always carry seed 100; ``seed`` picks the training sample);
  * a single JSONL file: if it is a MetaICL test file whose ``..._<k>_<seed>_train.jsonl`` sibling exists,
    that pairing is used; otherwise, per task, k lines drawn with ``seed`` become the demonstrations and the
    other lines (in file order) the test examples.
Knows nothing of models, methods or storage.

Mapping: one document per task, ``"<task>/demos"``, the demonstrations joined as ``"Input: ...\\nOutput:
..."`` blocks separated by a blank line; each test example becomes a question (``input``) with gold answer
``output``, gold document the task's demonstrations, type the task name (so scores split per task) and
``options`` kept in ``meta``. ``limit`` takes questions round-robin across tasks so a small limit still
covers every task; ``tasks`` keeps only the named tasks.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from memkit.datasets.records import BenchQuestion, Benchmark, bench_document
from memkit.documents import SourceDocument
from memkit.datasets.loaders.common import (
    DatasetError, check_count, field, iter_jsonl, needed_documents, require_path, string_list,
)

NAME = "metaicl"
EXPECTED = ("MetaICL JSONL (one object per line with task, input, output, options), or a MetaICL data/ "
            "directory of <task>/<task>_<k>_100_test.jsonl and <task>_<k>_<seed>_train.jsonl files")
_SPLIT_FILE = re.compile(r"^(?P<task>.+)_(?P<k>\d+)_(?P<seed>\d+)_(?P<split>train|dev|test)\.jsonl$")

Example = tuple[str, str, list]   # (input, output, options)


def load(path: str | Path, *, limit: int | None = None, k: int = 16, seed: int = 100,
         tasks: str | list[str] | None = None) -> Benchmark:
    """Read demonstrations and test examples per task; see the module docstring for the two layouts."""
    limit = check_count(NAME, "limit", limit)
    k = check_count(NAME, "k", k, optional=False)
    seed = check_count(NAME, "seed", seed, minimum=0, optional=False)
    wanted = _task_filter(tasks)
    path = require_path(NAME, path, EXPECTED)
    pairs = _from_directory(path, k, seed) if path.is_dir() else _from_file(path, k, seed)
    if wanted is not None:
        missing = sorted(wanted - set(pairs))
        if missing:
            raise DatasetError(NAME, path, f"no task {missing[0]!r} (tasks option)",
                               expected=f"one of: {', '.join(sorted(pairs)) or 'none'}")
        pairs = {name: pair for name, pair in pairs.items() if name in wanted}

    documents: list[SourceDocument] = []
    per_task: list[list[BenchQuestion]] = []
    for task, (demos, tests) in pairs.items():
        doc_id = f"{task}/demos"
        text = "\n\n".join(f"Input: {i}\nOutput: {o}" for i, o, _ in demos)
        documents.append(bench_document(id=doc_id, text=text, source=f"metaicl:{task}",
                                       meta={"task": task, "k": len(demos), "seed": seed}))
        per_task.append([BenchQuestion(id=f"{task}/{n}", question=i, answers=[o], doc_ids=[doc_id], type=task,
                                       meta={"task": task, "options": opts})
                         for n, (i, o, opts) in enumerate(tests)])
    kept = _round_robin(per_task, limit)
    meta = {"path": str(path), "tasks": list(pairs), "options": {"limit": limit, "k": k, "seed": seed}}
    return Benchmark(name=NAME, documents=needed_documents(documents, kept), questions=kept, meta=meta)


def _task_filter(tasks: str | list[str] | None) -> set[str] | None:
    if tasks is None:
        return None
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    names = {str(n).strip() for n in names if str(n).strip()}
    return names or None


def _read(path: Path) -> list[tuple[str, Example]]:
    """``(task, (input, output, options))`` per line."""
    rows = []
    for where, obj in iter_jsonl(NAME, path, EXPECTED):
        ctx = {"dataset": NAME, "path": path, "where": where, "expected": EXPECTED}
        task = field(obj, "task", str, nonempty=True, **ctx)
        text = field(obj, "input", str, nonempty=True, **ctx)
        output = field(obj, "output", str, nonempty=True, **ctx)
        options = string_list(field(obj, "options", list, default=[], **ctx), "options", **ctx)
        rows.append((task, (text, output, options)))
    if not rows:
        raise DatasetError(NAME, path, "no examples in the file", expected=EXPECTED)
    return rows


def _by_task(rows: list[tuple[str, Example]]) -> dict[str, list[Example]]:
    grouped: dict[str, list[Example]] = {}
    for task, example in rows:
        grouped.setdefault(task, []).append(example)
    return grouped


def _demos(train: Path, task: str, k: int) -> list[Example]:
    examples = _by_task(_read(train)).get(task, [])
    if len(examples) < k:
        raise DatasetError(NAME, train, f"task {task!r} has {len(examples)} demonstrations, fewer than k={k}",
                           expected=f"at least {k} lines for the task, or a smaller k")
    return examples[:k]


def _from_directory(root: Path, k: int, seed: int) -> dict[str, tuple[list[Example], list[Example]]]:
    tests = sorted(p for p in root.rglob(f"*_{k}_100_test.jsonl") if p.is_file())
    if not tests:
        raise DatasetError(NAME, root, f"no <task>_{k}_100_test.jsonl file under the directory",
                           expected=f"{EXPECTED}; or another k")
    pairs = {}
    for test in tests:
        task = test.name[: -len(f"_{k}_100_test.jsonl")]
        train = test.with_name(f"{task}_{k}_{seed}_train.jsonl")
        if not train.is_file():
            raise DatasetError(NAME, train, "no such file: the demonstrations for this test file",
                               expected=f"the {k}-shot training sample for seed {seed}, or another seed")
        examples = _by_task(_read(test))
        if task not in examples:
            raise DatasetError(NAME, test, f"no line has task {task!r}", expected="the file name's task in 'task'")
        pairs[task] = (_demos(train, task, k), examples[task])
    return pairs


def _from_file(path: Path, k: int, seed: int) -> dict[str, tuple[list[Example], list[Example]]]:
    grouped = _by_task(_read(path))
    match = _SPLIT_FILE.match(path.name)
    if match and match["split"] == "test" and int(match["k"]) == k:
        train = path.with_name(f"{match['task']}_{k}_{seed}_train.jsonl")
        if train.is_file():
            return {task: (_demos(train, task, k), examples) for task, examples in grouped.items()}
    pairs = {}
    for task, examples in grouped.items():
        if len(examples) <= k:
            raise DatasetError(NAME, path, f"task {task!r} has {len(examples)} examples, too few to hold out "
                               f"k={k} demonstrations and keep a test example", expected="more lines, or a smaller k")
        order = list(range(len(examples)))
        random.Random(f"{seed}:{task}").shuffle(order)
        chosen = set(order[:k])
        pairs[task] = ([examples[i] for i in order[:k]], [e for i, e in enumerate(examples) if i not in chosen])
    return pairs


def _round_robin(per_task: list[list[BenchQuestion]], limit: int | None) -> list[BenchQuestion]:
    """All questions, or ``limit`` of them taken one per task in turn; task order and file order kept."""
    if limit is None:
        return [q for group in per_task for q in group]
    counts = [0] * len(per_task)
    remaining = limit
    while remaining > 0 and any(c < len(g) for c, g in zip(counts, per_task)):
        for t, group in enumerate(per_task):
            if remaining and counts[t] < len(group):
                counts[t] += 1
                remaining -= 1
    return [q for t, group in enumerate(per_task) for q in group[: counts[t]]]
