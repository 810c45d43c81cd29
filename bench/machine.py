"""Where and when a result was measured: the stamp every result file carries.

Each step of ``python -m bench`` writes its JSON with a ``measured`` stamp
(run id, date, machine, Python, pyproxyproto's commit, the command and the
load average), so a report built from a folder can say, for every section,
whether it comes from the run that wrote the report or from an older one.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} logical CPUs"


def load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    """The checkout's commit, marked when the measured code has uncommitted changes."""
    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "pyproxyproto", "csrc", "setup.py")
    return head + (" + uncommitted changes" if dirty else "")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def stamp(run_id: str | None = None, command: str | None = None) -> dict[str, Any]:
    """The ``measured`` stamp of a result made now, on this machine."""
    return {
        "run": run_id or os.environ.get("PYPROXYPROTO_BENCH_RUN") or now(),
        "date": now(),
        "machine": cpu_model(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit(),
        "command": command or "python -m " + " ".join(
            [os.path.splitext(os.path.relpath(sys.argv[0], ROOT))[0].replace(os.sep, ".")]
            + sys.argv[1:]),
        "load": load(),
    }


def describe(measured: dict[str, Any] | None) -> str:
    """One line: when and where, for a result from another run."""
    if not measured:
        return "when and where unknown (the file carries no stamp)"
    return (f"measured {measured.get('date', '?')} on {measured.get('machine', '?')}, "
            f"{measured.get('python', '?')}, commit {measured.get('commit', '?')}, "
            f"by `{measured.get('command', '?')}`")
