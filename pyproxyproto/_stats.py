"""Connection counters (``Stats``), shareable by any number of servers and threads."""

from __future__ import annotations

import threading

# Every counter, in the order they are reported.
COUNTERS = (
    "accepted",
    "accepted_v1",
    "accepted_v2",
    "local",
    "skipped",
    "rejected_untrusted",
    "rejected_invalid",
    "rejected_by_validator",
    "timed_out",
    "closed_early",
)


class Stats:
    """Connection counters, shareable by any number of servers and threads.

    - ``accepted``: headers accepted (LOCAL and UNKNOWN included, and
      headers consumed but not believed under "ignore"), split by version
      into ``accepted_v1`` and ``accepted_v2``; ``local`` counts the v2
      LOCAL headers among them (balancers' health checks).
    - ``skipped``: peers served without a header ("skip").
    - ``rejected_untrusted``: peers refused before a byte was read.
    - ``rejected_invalid``: malformed or too large headers, and peers that
      sent no header at all.
    - ``rejected_by_validator``: headers refused by ``validate``.
    - ``timed_out``: no complete header in time.
    - ``closed_early``: the peer closed (or the connection was lost)
      before the header was complete.
    """

    __slots__ = (*COUNTERS, "_lock")

    accepted: int
    accepted_v1: int
    accepted_v2: int
    local: int
    skipped: int
    rejected_untrusted: int
    rejected_invalid: int
    rejected_by_validator: int
    timed_out: int
    closed_early: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        # `x += 1` on an attribute is a read and a write: without the lock,
        # two threads can lose a count.
        self._lock = threading.Lock()

    def count(self, name: str) -> None:
        """Add one to the counter ``name``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def count_accepted(self, version: int, local: bool) -> None:
        """One accepted header of ``version`` (1 or 2), LOCAL or not."""
        with self._lock:
            self.accepted += 1
            if version == 1:
                self.accepted_v1 += 1
            else:
                self.accepted_v2 += 1
                if local:
                    self.local += 1

    def as_dict(self) -> dict[str, int]:
        """Every counter, read at one instant."""
        with self._lock:
            return {name: getattr(self, name) for name in COUNTERS}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"Stats({fields})"
