"""Reading a YAML config file (task map, training config, gate policy): one place that turns a
missing, unreadable or malformed file into a one-line user error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from features.errors import UserError


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of ``path``; ``what`` names the file in errors ("task map", "policy")."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None


def read_yaml_mapping(path: str | Path, what: str, keys: str) -> dict[str, Any]:
    """``path`` as a mapping (an empty file is an empty one); ``keys`` says what its keys are."""
    data = read_yaml(path, what)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must be a mapping of {keys}")
    return data


def reject_unknown_keys(values: Mapping[str, Any], known: Iterable[str], what: str) -> None:
    """A one-line error for the first key of ``values`` that is not ``known``."""
    known = list(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"{what}: unknown key {unknown[0]!r} (known: {', '.join(known)})")


def typed_numbers(values: Mapping[str, Any], fields: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``values`` with each number made the type its dataclass field declares (``int`` or ``float``); a
    non-number is a one-line error. Fields of other types (strings) and None where the field allows it
    are left for the dataclass to check."""
    out = dict(values)
    for key, value in values.items():
        kind = fields[key].type
        if (value is None and "None" in kind) or kind not in ("int", "float", "float | None", "int | None"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise UserError(f"{what}: {key} must be a number, got {value!r}")
        if kind.startswith("int") and value != int(value):
            raise UserError(f"{what}: {key} must be an integer, got {value!r}")
        out[key] = int(value) if kind.startswith("int") else float(value)
    return out
