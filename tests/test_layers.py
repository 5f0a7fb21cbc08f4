"""The floors of docs/architecture.md hold: features <- models <- evaluation <- pipelines <- benchmarks.

A module imports only from its own floor or the floors below it (an import inside a function counts
too); inside pipelines/ the stages stand side by side; no module imports itself back through a
circle; the scorer, which the MLflow pyfunc ships, imports neither Spark nor MLflow.
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


# Inside pipelines/, what each stage must not import: another stage, or the data jobs (the input reader,
# pipelines.data.inputs, is shared by data and scoring).
SIDEWAYS = {
    "data": ("pipelines.training", "pipelines.scoring"),
    "training": ("pipelines.scoring", "pipelines.data"),
    "scoring": ("pipelines.training", "pipelines.data.synth", "pipelines.data.prepare"),
    "monitoring": ("pipelines.training", "pipelines.scoring", "pipelines.data"),
}


def sideways_imports(stage: str) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {module}"
            for path in sorted((ROOT / "pipelines" / stage).rglob("*.py"))
            for module in sorted(imported_modules(path))
            if any(module == f or module.startswith(f + ".") for f in SIDEWAYS[stage])]


@pytest.mark.parametrize("stage", SIDEWAYS)
def test_the_stages_of_pipelines_stand_side_by_side(stage):
    assert (ROOT / "pipelines" / stage / "__init__.py").is_file()
    assert sideways_imports(stage) == []


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_circles() -> list[list[str]]:
    """Every circle of imports among the project's modules (imports inside functions count)."""
    files = [p for floor in FLOORS for p in sorted((ROOT / floor).rglob("*.py"))]
    edges = {p: {module_file(m) for m in imported_modules(p)} - {None} for p in files}
    circles, state = [], {}  # state: 1 on the path, 2 done

    def visit(node: Path, path: list[Path]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([str(p.relative_to(ROOT)) for p in path[path.index(nxt):] + [nxt]])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in files:
        if node not in state:
            visit(node, [node])
    return circles


def test_no_circle_of_imports():
    assert import_circles() == []


def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch):
    package = tmp_path / "features"
    package.mkdir()
    (package / "a.py").write_text("from features.b import x\n")
    (package / "b.py").write_text("def f():\n    from features.a import y\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_circles() == [["features/a.py", "features/b.py", "features/a.py"]]


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pipelines.data.prepare import run_prepare\n")
    assert "pipelines.data.prepare" in imported_modules(module)


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
