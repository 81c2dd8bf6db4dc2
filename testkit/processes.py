"""What the tests and load tests see of real processes, read from /proc: alive or not,
children, descendants, process groups, memory and CPU, and the HTTP workers a proxy
announced."""

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


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it, in pid order."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat(int(entry))) is not None and fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    family, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in family:
                family.add(pid)
                frontier.append(pid)
    return sorted(family)


def rss_mb(pid: int) -> float | None:
    """Resident memory in MiB (``VmRSS``), or None if the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (0 if it is gone)."""
    fields = stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def live_workers(output: str) -> set[int]:
    """The HTTP workers a proxy announced in its output ("Worker ready [pid]") still running."""
    return {pid for pid in map(int, re.findall(r"Worker ready \[(\d+)\]", output)) if alive(pid)}
