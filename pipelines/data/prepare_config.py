"""PrepareConfig: every knob that decides the content of the shards, apart from the Spark job so
that the CLI reads its defaults without starting Spark."""

from __future__ import annotations

from dataclasses import dataclass, field

from features.errors import UserError
from features.schema import MAX_GRADE, MIN_GRADE, TEXT_LIMITS


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that decides the content of the shards (recorded in the manifest)."""

    label_threshold: float = 3.0  # mean judged grade >= this is relevant
    click_labels: bool = True  # label unjudged examples from clicks (else exclude them)
    min_impressions: int = 20  # fewer impressions: no click label
    click_ctr_threshold: float = 0.12  # position-debiased CTR >= this is relevant
    position_bias_power: float = 1.0  # examination probability = position ** -power
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_salt: str = "adsrel-split-v1"
    source_weights: dict[str, float] = field(
        default_factory=lambda: {"human": 1.0, "llm": 0.7, "click": 0.4}
    )
    max_records_per_file: int = 500_000
    text_limits: dict[str, int] = field(default_factory=lambda: dict(TEXT_LIMITS))

    def __post_init__(self) -> None:
        ratios = self.split_ratios
        if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
            raise UserError(f"split ratios must be three non-negative numbers summing to 1: {ratios}")
        if not MIN_GRADE <= self.label_threshold <= MAX_GRADE:
            raise UserError(f"label threshold must be within {MIN_GRADE}..{MAX_GRADE}")
        if self.min_impressions < 1 or self.max_records_per_file < 1:
            raise UserError("min impressions and max records per file must be positive")
