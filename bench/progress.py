"""A progress bar per benchmark step, on stderr.

On a terminal the bar is redrawn in place; elsewhere (CI logs, pipes) a line
is printed at each tenth of the step, so a log shows the step moving
without one line per update.
"""

from __future__ import annotations

import sys
import time

WIDTH = 30


class Progress:
    def __init__(self, label: str, total: float, stream=None) -> None:
        self.label = label
        self.total = max(total, 1e-9)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last_tenth = -1
        self.done = 0.0
        self.note = ""
        self.update(0)

    def update(self, done: float, note: str = "") -> None:
        self.done = min(done, self.total)
        self.note = note or self.note
        fraction = self.done / self.total
        elapsed = time.monotonic() - self.start
        if self.tty:
            filled = int(WIDTH * fraction)
            bar = "#" * filled + "-" * (WIDTH - filled)
            line = (f"\r{self.label:<12} [{bar}] {100 * fraction:3.0f}% {elapsed:5.0f} s"
                    f"  {self.note[:40]:<40}")
            self.stream.write(line)
            self.stream.flush()
            return
        tenth = int(10 * fraction)
        if tenth > self.last_tenth:
            self.last_tenth = tenth
            self.stream.write(f"{self.label}: {100 * fraction:3.0f}% after {elapsed:.0f} s"
                              + (f" ({self.note})" if self.note else "") + "\n")
            self.stream.flush()

    def finish(self, note: str = "") -> float:
        """Close the bar; returns the step's seconds."""
        elapsed = time.monotonic() - self.start
        if self.tty:
            self.update(self.total, note or "done")
            self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: done in {elapsed:.0f} s"
                              + (f" ({note})" if note else "") + "\n")
        self.stream.flush()
        return elapsed
