"""The rooms' import rules (docs/architecture.md, "Packages and what each may know"), checked on every import
statement, those inside functions included: memkit (its service layer included) knows no storage, front door
or experiment; storage knows no model; the server imports no CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = {
    "memkit": {"storage", "cli", "server", "experiments"},
    "storage": {"memkit", "cli", "server", "experiments", "torch", "transformers"},
    "server": {"cli", "experiments"},
}


def imported(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (relative imports are its own room)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("room", sorted(RULES))
def test_a_room_imports_nothing_it_must_not_know(room):
    files = sorted((ROOT / room).rglob("*.py"))
    assert files, room
    broken = {str(f.relative_to(ROOT)): sorted(imported(f) & RULES[room]) for f in files}
    assert {f: bad for f, bad in broken.items() if bad} == {}


def test_the_check_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from storage.store import Store\n    import cli.main\n")
    assert imported(probe) == {"storage", "cli"}


def test_the_packaged_models_paths_live_in_one_module():
    """Only ``memkit/packaged.py`` spells where a packaged model lives inside the package."""
    spelled = []
    for room in ("memkit", "storage", "cli", "server", "experiments"):
        for f in sorted((ROOT / room).rglob("*.py")):
            text = f.read_text()
            if f != ROOT / "memkit" / "packaged.py" and ('parent / "models"' in text or
                                                         any(f'"world-lm-{k}"' in text
                                                             for k in ("adapter", "slots", "hybrid-slots"))):
                spelled.append(str(f.relative_to(ROOT)))
    assert spelled == []


def test_the_method_signatures_the_architecture_names_are_the_code():
    """docs/architecture.md's "Methods" section names each method call as the protocols declare it."""
    import inspect
    import re

    from memkit.methods import base

    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Methods (`memkit/methods/`)"):]
    section = section[: section.index("\n## ", 5)]
    protocols = [base.Method, base.StatefulMethod, base.BatchAnswering, base.BatchKeys, base.ReadsQuestions,
                 base.WeighsQueries, base.ChoosesPayloads]
    declared = {}
    for proto in protocols:
        for name, fn in vars(proto).items():
            if inspect.isfunction(fn) and not name.startswith("_"):
                declared.setdefault(name, set()).add(
                    tuple(p for p in inspect.signature(fn).parameters if p != "self"))
    named = re.findall(r"`(\w+)\(([^`)]*)\)", section)
    checked = 0
    for name, args in named:
        if name not in declared:
            continue
        params = tuple(a.split("=")[0].strip() for a in args.split(",") if a.strip() and a.strip() != "...")
        elided = "..." in args            # e.g. combine(..., read=): the named parameters exist
        assert any((elided or params == want[: len(params)]) and all(p in want for p in params)
                   for want in declared[name]), (name, params, declared[name])
        checked += 1
    assert checked >= 10
