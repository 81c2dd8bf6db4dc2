"""What the tests see of real processes, read from /proc: alive or not, children, process
groups, and the HTTP workers a proxy announced."""

from __future__ import annotations

import os
import re
from pathlib import Path


def stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the process name (state first), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie nobody has reaped yet."""
    fields = stat(pid)
    return fields is not None and fields[0] != "Z"


def find(*, parent: int | None = None, group: int | None = None, cmdline: bytes | None = None) -> list[int]:
    """Live processes with this parent, in this process group, whose command line contains
    ``cmdline`` (each filter only when given)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat(int(entry))
        if fields is None or fields[0] == "Z":
            continue
        if (parent is not None and int(fields[1]) != parent) or (group is not None and int(fields[2]) != group):
            continue
        if cmdline is not None:
            try:
                if cmdline not in Path(f"/proc/{entry}/cmdline").read_bytes():
                    continue
            except OSError:
                continue
        found.append(int(entry))
    return found


def live_workers(output: str) -> set[int]:
    """The HTTP workers a proxy announced in its output ("Worker ready [pid]") still running."""
    return {pid for pid in map(int, re.findall(r"Worker ready \[(\d+)\]", output)) if alive(pid)}
