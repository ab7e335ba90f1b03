"""sr-bench's progress bar (tqdm on stderr, so the report on stdout stays clean)."""

from __future__ import annotations

import sys
from typing import Any


def bar(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cell", disable=not enabled, file=sys.stderr, leave=False)
