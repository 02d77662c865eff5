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
