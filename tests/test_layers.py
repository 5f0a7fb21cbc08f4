"""The floors of docs/architecture.md hold: features <- models <- evaluation <- pipelines <- benchmarks.

A module imports only from its own floor or the floors below it (an import inside a function counts
too); the scorer, which the MLflow pyfunc ships, imports neither Spark nor MLflow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ("features", "models", "evaluation", "pipelines", "benchmarks")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (absolute imports only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def upward_imports(floor: str) -> list[str]:
    level = FLOORS.index(floor)
    above = set(FLOORS[level + 1:])
    return [f"{path.relative_to(ROOT)} imports {module}"
            for path in sorted((ROOT / floor).rglob("*.py"))
            for module in sorted(imported_modules(path)) if module.split(".")[0] in above]


@pytest.mark.parametrize("floor", FLOORS)
def test_no_import_runs_up_a_floor(floor):
    assert upward_imports(floor) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pipelines.prepare import run_prepare\n")
    assert "pipelines.prepare" in imported_modules(module)


def loaded_after(statement: str, packages: tuple[str, ...]) -> list[str]:
    """The modules of ``packages`` that ``statement`` loads, in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {set(packages)!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return eval(out.stdout.strip())  # a printed list of names


def test_the_scorer_imports_neither_spark_nor_mlflow_nor_the_floors_above():
    assert loaded_after("import models.scoring", ("pyspark", "mlflow", "evaluation", "pipelines", "sklearn")) == []


def test_the_pyfunc_loads_only_the_floors_it_ships():
    from evaluation.registry import CODE_PACKAGES

    assert CODE_PACKAGES == ("features", "models")
    # mlflow.pyfunc itself may import pyspark; the pyfunc's own code must not need it
    assert loaded_after("import models.pyfunc_model", ("evaluation", "pipelines", "benchmarks")) == []
