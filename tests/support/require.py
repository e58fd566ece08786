"""Prerequisites of real-peer tests: a skip on a developer's machine, a failure in CI.

In CI (``CI=true``) a missing prerequisite must never turn into a quiet skip, because a
skipped real-peer test proves nothing.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: object, reason: str) -> None:
    """Skip (locally) or fail (in CI) the calling test unless ``condition`` holds."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)
