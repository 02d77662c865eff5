"""`services` is the UI's one door: ui/ imports no other part of prefloop and reaches into none of the services'
parts (store, loop, battles, access, runner); services/ never imports ui. Read from the source with `ast`, no
app launched.

    python -m pytest tests/test_ui_door.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEHIND_THE_DOOR = {"access", "evaluation", "labeling", "models", "serving", "storage", "training"}
PARTS = {"store", "loop", "battles", "access", "runner"}  # what Services is made of: the tests' and the CLI's


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in `tree`, lazy ones inside functions included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def parts_touched(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, part) of every `services.<part>` in `tree`."""
    return [
        (node.lineno, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in PARTS
        and isinstance(node.value, ast.Name)
        and node.value.id == "services"
    ]


def sources(folder: str) -> dict[str, ast.AST]:
    files = sorted((REPO / folder).glob("*.py"))
    assert files, f"no Python files in {folder}/"
    return {f"{folder}/{f.name}": ast.parse(f.read_text(), filename=str(f)) for f in files}


def test_the_ui_imports_only_services_of_prefloops_packages():
    wrong = [
        f"{name}:{line} imports {package}"
        for name, tree in sources("ui").items()
        for line, package in imported(tree)
        if package in BEHIND_THE_DOOR
    ]
    assert not wrong, "ui/ goes through services (re-export what it needs there): " + "; ".join(wrong)


def test_the_ui_asks_the_use_cases_not_the_parts_behind_them():
    wrong = [
        f"{name}:{line} services.{part}" for name, tree in sources("ui").items() for line, part in parts_touched(tree)
    ]
    assert not wrong, "ui/ calls services' use cases (services.labeling, .versions, ...): " + "; ".join(wrong)


def test_services_never_import_the_ui():
    wrong = [
        f"{name}:{line}"
        for name, tree in sources("services").items()
        for line, package in imported(tree)
        if package in ("ui", "gradio", "app")
    ]
    assert not wrong, "services/ must not import the UI: " + "; ".join(wrong)


def test_the_checks_catch_what_they_look_for():
    tree = ast.parse("def f(services):\n    from storage import Store\n    return services.store.prompts.count()\n")
    assert imported(tree) == [(2, "storage")] and parts_touched(tree) == [(3, "store")]
