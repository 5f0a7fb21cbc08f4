"""The monitoring thresholds (configs/monitoring.yaml)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.config_file import read_yaml_mapping, reject_unknown_keys, typed_numbers
from features.errors import UserError


@dataclass(frozen=True)
class MonitorPolicy:
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    volume_change_warn: float = 0.3
    volume_change_alert: float = 0.5
    rejected_share_warn: float = 0.02
    rejected_share_alert: float = 0.05
    min_rows: int = 500

    def __post_init__(self) -> None:
        for low, high in (("psi_warn", "psi_alert"), ("volume_change_warn", "volume_change_alert"),
                          ("rejected_share_warn", "rejected_share_alert")):
            if not 0 <= getattr(self, low) <= getattr(self, high):
                raise UserError(f"monitoring policy: need 0 <= {low} <= {high}")
        if self.min_rows < 1:
            raise UserError("monitoring policy: min_rows must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(MonitorPolicy)}


def load_monitor_policy(path: str | Path | None = None) -> MonitorPolicy:
    """The thresholds of a YAML file (every key optional), else the defaults."""
    values = read_yaml_mapping(path, "monitoring policy", "thresholds") if path else {}
    reject_unknown_keys(values, FIELDS, "monitoring policy")
    values = typed_numbers(values, FIELDS, "monitoring policy")
    return MonitorPolicy(**values)
