"""The layers import downward only: training/ (the round, its folder and its process) knows nothing of services/
or ui/; its one exception is training/__main__.py, which only gives `python -m training` its name and calls the
command's code in services/headless.py. Read from the source with `ast`.

    python -m pytest tests/test_layers.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ABOVE_TRAINING = {"services", "ui", "app"}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages `path` imports, lazy imports inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_training_imports_nothing_above_it_but_the_commands_name():
    wrong = {
        path.name: sorted(imported_packages(path) & ABOVE_TRAINING)
        for path in sorted((REPO / "training").glob("*.py"))
        if path.name != "__main__.py" and imported_packages(path) & ABOVE_TRAINING
    }
    assert not wrong, f"training/ must not import services/ or ui/: {wrong}"
    assert imported_packages(REPO / "training" / "__main__.py") <= {"sys", "services"}, "only the command's name"


PACKAGES = ("access", "evaluation", "labeling", "models", "serving", "services", "storage", "training", "ui")
# each package's level: a package imports only packages on lower levels (bench/ and app.py sit on top of all)
LEVELS = {"ui": 4, "services": 3, "labeling": 2, "training": 2, "serving": 1, "access": 0, "evaluation": 0}
LEVELS |= {"models": 0, "storage": 0}


def package_graph() -> dict[str, set[str]]:
    """Which of prefloop's packages each one imports; `__main__.py` files are commands, never imported."""
    graph = {}
    for package in PACKAGES:
        files = [path for path in (REPO / package).glob("*.py") if path.name != "__main__.py"]
        graph[package] = set().union(*map(imported_packages, files)) & set(PACKAGES) - {package}
    return graph


def test_packages_import_downward_only_so_there_is_no_loop():
    upward = {
        (package, other)
        for package, imports in package_graph().items()
        for other in imports
        if LEVELS[other] >= LEVELS[package]
    }
    assert not upward, f"a package imports one on its own level or above it: {sorted(upward)}"


def test_tests_import_no_private_names():
    """Tests use what the code offers; a private name is the code's own business and may change."""
    private = [
        f"{path.name}: {node.module}.{alias.name}"
        for path in sorted((REPO / "tests").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not private, f"tests import private names: {private}"
