"""Task maps: which business segment (market x vertical) each row belongs to.

A task map is YAML (see configs/tasks.yaml and shared/design.md). Tasks are matched in file order
and the first match wins, so a specific task listed before a broad one carves rows out of it.
Markets compare exactly after locale normalisation ('EN-us' -> 'en-US'); verticals compare in lower
case; '*' matches anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from features.config_file import read_yaml
from features.errors import UserError

if TYPE_CHECKING:  # Spark is imported only by the Spark helpers: scorers use the map without it
    from pyspark.sql import Column

TASK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Task:
    name: str
    id: int
    markets: tuple[str, ...]
    verticals: tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "id": self.id,
            "markets": list(self.markets),
            "verticals": list(self.verticals),
        }


@dataclass(frozen=True)
class TaskMap:
    tasks: tuple[Task, ...]
    unmapped: str  # "quarantine" or the name of the catch-all task

    @property
    def catch_all(self) -> Task | None:
        if self.unmapped == QUARANTINE:
            return None
        return next(t for t in self.tasks if t.name == self.unmapped)

    def as_dict(self) -> dict:
        return {"tasks": [t.as_dict() for t in self.tasks], "unmapped": self.unmapped}

    @property
    def markets(self) -> list[str]:
        """The markets the tasks name ('*' aside), sorted."""
        return sorted({m for t in self.tasks for m in t.markets if m != "*"})

    @property
    def verticals(self) -> list[str]:
        """The verticals the tasks name ('*' aside), sorted."""
        return sorted({v for t in self.tasks for v in t.verticals if v != "*"})

    def task_for(self, market: str | None, vertical: str | None) -> Task | None:
        """Python twin of :func:`task_column` for one row (scorers outside Spark): first match wins,
        then the catch-all; None when the map quarantines unmapped rows."""
        market = normalise_locale(market) if market else ""
        vertical = (vertical or "").strip().lower()
        return self.first_match(market, vertical) or self.catch_all

    def first_match(self, market: str | None, vertical: str | None) -> Task | None:
        """The first task whose markets and verticals admit the (normalised) pair; None matches
        only '*'."""
        for task in self.tasks:
            if ("*" in task.markets or market in task.markets) and (
                "*" in task.verticals or vertical in task.verticals
            ):
                return task
        return None


def _string_list(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise UserError(f"task map: {what} must be a non-empty list of strings")
    return tuple(value)


def parse_task_map(data: object) -> TaskMap:
    """Validates a task map already loaded from YAML; raises UserError naming the first problem."""
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise UserError("task map: expected a mapping with a non-empty 'tasks' list")
    tasks: list[Task] = []
    for index, entry in enumerate(data["tasks"]):
        if not isinstance(entry, dict):
            raise UserError(f"task map: task #{index + 1} is not a mapping")
        name = entry.get("name")
        if not isinstance(name, str) or not TASK_NAME.match(name):
            raise UserError(
                f"task map: bad task name {name!r} (letters, digits, '-' and '_' only)"
            )
        if any(t.name == name for t in tasks):
            raise UserError(f"task map: duplicate task name {name!r}")
        markets = _string_list(entry.get("markets", ["*"]), f"task {name!r} markets")
        verticals = _string_list(entry.get("verticals", ["*"]), f"task {name!r} verticals")
        tasks.append(
            Task(
                name=name,
                id=len(tasks),
                markets=tuple(m if m == "*" else normalise_locale(m) for m in markets),
                verticals=tuple(v.lower() for v in verticals),
            )
        )
    unmapped = data.get("unmapped", QUARANTINE)
    if not isinstance(unmapped, str) or not TASK_NAME.match(unmapped):
        raise UserError(f"task map: 'unmapped' must be 'quarantine' or a task name, not {unmapped!r}")
    if unmapped != QUARANTINE and not any(t.name == unmapped for t in tasks):
        # A catch-all that is not one of the listed tasks becomes a task of its own, listed last.
        tasks.append(Task(name=unmapped, id=len(tasks), markets=("*",), verticals=("*",)))
    return TaskMap(tasks=tuple(tasks), unmapped=unmapped)


def load_task_map(path: str | Path) -> TaskMap:
    return parse_task_map(read_yaml(path, "task map"))


def task_map_by_values(keys: tuple[str, ...], values: list[tuple[str, ...]]) -> TaskMap:
    """One task per distinct value of ``keys`` (market and/or vertical), for --task-by."""
    tasks = []
    for combo in sorted(set(values)):
        name = re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(combo))
        spec = dict(zip(keys, combo, strict=True))
        tasks.append(
            {
                "name": name,
                "markets": [spec.get("market", "*")],
                "verticals": [spec.get("vertical", "*")],
            }
        )
    if not tasks:
        raise UserError("--task-by found no valid rows to make tasks from")
    return parse_task_map({"tasks": tasks, "unmapped": QUARANTINE})


def normalise_locale(value: str) -> str:
    """'EN-us' -> 'en-US', 'en_gb' -> 'en-GB' (Python side; see :func:`locale_column`)."""
    lang, sep, region = value.strip().replace("_", "-").partition("-")
    return f"{lang.lower()}-{region.upper()}" if sep else value.strip()


def locale_column(column: Column) -> Column:
    """Spark twin of :func:`normalise_locale`: the locale with language lower and region upper.

    Like its twin it splits at the first separator, so 'en-GB-US' stays three parts (and is no
    locale) instead of becoming 'en-US'.
    """
    from pyspark.sql import functions as F

    trimmed = F.replace(F.trim(column), F.lit("_"), F.lit("-"))
    lang = F.lower(F.substring_index(trimmed, "-", 1))
    region = F.upper(trimmed.substr(F.instr(trimmed, "-") + 1, F.length(trimmed)))
    return F.when(trimmed.contains("-"), F.concat(lang, F.lit("-"), region)).otherwise(trimmed)


def task_column(task_map: TaskMap, market: Column, vertical: Column) -> Column:
    """The task id of each row (null when unmapped and the map quarantines unmapped rows).

    Every pair of (a market the map names, or any other) x (a vertical it names, or any other) is
    resolved once here by :meth:`TaskMap.first_match`; Spark then does two map lookups and one
    array index per row; a when-chain over the tasks would re-evaluate the market and vertical
    expressions for every task.
    """
    from pyspark.sql import functions as F

    markets, verticals = task_map.markets, task_map.verticals

    def index(values: list[str], column: Column) -> Column:
        if not values:  # only '*' in the map: every row is in the one slot
            return F.lit(0)
        lookup = F.create_map(*[x for i, v in enumerate(values) for x in (F.lit(v), F.lit(i))])
        return F.coalesce(lookup[column], F.lit(len(values)))  # unnamed (or null): the last slot

    fallback = task_map.catch_all
    table = []
    for m in [*markets, None]:
        for v in [*verticals, None]:
            task = task_map.first_match(m, v) or fallback
            table.append(F.lit(task.id if task else None).cast("int"))
    return F.array(*table)[index(markets, market) * (len(verticals) + 1) + index(verticals, vertical)]


def task_name_column(task_map: TaskMap, task_id: Column) -> Column:
    from pyspark.sql import functions as F

    names = F.create_map(*[x for t in task_map.tasks for x in (F.lit(t.id), F.lit(t.name))])
    return names[task_id]
