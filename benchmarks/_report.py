"""What every benchmark ends with: one JSON document on stdout (and in ``--out`` if given)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any


def emit(benchmark: str, out: Path | None = None, **fields: Any) -> int:
    """Print ``{"benchmark", "python", "machine", **fields}`` as JSON; write it to ``out`` too."""
    result = {
        "benchmark": benchmark,
        "python": platform.python_version(),
        "machine": platform.machine(),
        **fields,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")
    return 0
