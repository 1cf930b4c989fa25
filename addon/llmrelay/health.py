"""Which providers (and which keys of a key pool) failed lately: skipped for a while when
another is at hand (a route's fallbacks, the pool's other keys).

Rules:
- a failure marks its name failing for `relay.cool_down` seconds, or for its `retry-after`
  when longer, at most `MAX_COOL_DOWN`;
- a name is skipped only while something else can be tried; when everything is failing,
  everything is tried in order.
"""

from __future__ import annotations

import time

COOL_DOWN = 30.0
MAX_COOL_DOWN = 300.0
_FAILING: dict[str, float] = {}  # name → until (monotonic seconds)


def mark_failing(name: str, retry_after: float | None, cool_down: float = COOL_DOWN) -> None:
    _FAILING[name] = time.monotonic() + min(max(retry_after or 0.0, cool_down), MAX_COOL_DOWN)


def cooling(name: str) -> bool:
    until = _FAILING.get(name)
    if until is None:
        return False
    if until <= time.monotonic():
        del _FAILING[name]
        return False
    return True
