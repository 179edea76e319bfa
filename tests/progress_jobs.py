"""Jobs for tests/test_console.py's progress-bar test: module-level, so spawned worker processes can import them."""

from __future__ import annotations

import time


def sleep_job(seconds: float) -> dict:
    """Sleep ``seconds``, then return a record the way a song job does (``split`` is all the caller reads)."""
    time.sleep(seconds)
    return {"split": "test", "seconds": seconds}
