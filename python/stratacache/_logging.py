"""Rate-limited warnings for Redis trouble.

During an outage every operation fails the same way; one log line per
failure would bury the log (one ``SessionStore.create()`` logged 20,000
lines). :func:`warn_l2` writes the first failure of each kind at once, then
at most one line per kind per :data:`INTERVAL` seconds, saying how many
were suppressed meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["INTERVAL", "warn_l2"]

log = logging.getLogger("stratacache")

#: Seconds between two lines of the same kind.
INTERVAL = 10.0

_lock = threading.Lock()
# kind -> (monotonic time of the last line, failures suppressed since)
_state: dict[str, tuple[float, int]] = {}


def warn_l2(kind: str, message: str, error: BaseException) -> None:
    """Log `message` (with `error`) for a failure of `kind` (e.g. the
    operation and the error class), rate-limited per kind."""
    now = time.monotonic()
    key = f"{kind}:{type(error).__name__}"
    with _lock:
        last, suppressed = _state.get(key, (-INTERVAL, 0))
        if now - last < INTERVAL:
            _state[key] = (last, suppressed + 1)
            return
        _state[key] = (now, 0)
    more = f" ({suppressed} more like it in the last {now - last:.0f} s)" if suppressed else ""
    log.warning("stratacache: %s: %s%s", message, error, more)
