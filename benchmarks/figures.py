"""How a benchmark hands over its figures: JSON on stdout, and in ``--json PATH`` when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(figures: dict[str, Any], json_path: Path | None) -> None:
    text = json.dumps(figures, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")
