"""Search results (grep/ripgrep lines, file lists): group by file, drop duplicates.

``src/a.py:12:foo`` repeated for every match spends tokens on the same path again and again;
grouped, each path is written once and each match as `` 12: foo`` (indentation of the matched
line is dropped; context lines keep their ``-`` separator). Identical matches are dropped.
File lists (``Glob``, ``find``, ``grep -l``) are grouped by directory.

Lossy, only above ``lossy_min_chars``: each file keeps its first few matches plus every match
with a selective question term; files beyond ``max_items`` keep only those with question
matches besides the first and last ones. Notes say what was left out; a CCR marker on the
first line gives the key to the full results.
"""

from __future__ import annotations

import re

from headroom.transforms import ccr
from headroom.transforms.base import Compressed, Context
from headroom.transforms.scan import Joined
from headroom.transforms.select import keep_indices

_MATCH = re.compile(r"^(?P<path>[^\s:][^:\n]*?):(?P<line>\d+)(?P<sep>[:-])(?P<text>.*)$")
_CONTEXT = re.compile(r"^(?P<path>[^\s:][^\n]*?)-(?P<line>\d+)-(?P<text>.*)$")
_NO_LINE = re.compile(r"^(?P<path>[^\s:]+\.\w{1,10}):(?P<text>.*)$")
_HEADING_ENTRY = re.compile(r"^(?P<line>\d+)(?P<sep>[:-])(?P<text>.*)$")
_PATH = re.compile(r"^\.{0,2}/?[\w@.+\-]+(?:/[\w@.+\- ]+)*(?:\.\w{1,10}|/)?$")
MIN_SAVING = 0.05

Entry = tuple[str, str, str]  # (line number or "", separator, text)


def _parse(lines: list[str]) -> tuple[list[str], dict[str, list[Entry]]] | None:
    """Header lines and path → entries, or None when these are not search results."""
    files: dict[str, list[Entry]] = {}
    other: list[str] = []
    known: set[str] = set()
    parsed = [_MATCH.match(line) for line in lines]
    for m in parsed:
        if m and m.group("sep") == ":":
            known.add(m.group("path"))
    heading: str | None = None
    hits = 0
    for line, m in zip(lines, parsed):
        if not line or line == "--":
            heading = None if not line else heading
            continue
        if m is None and heading is not None:
            h = _HEADING_ENTRY.match(line)
            if h:
                files[heading].append((h.group("line"), h.group("sep"), h.group("text")))
                hits += 1
                continue
        if m is None:
            c = _CONTEXT.match(line)
            if c and c.group("path") in known:
                m = c
        if m is not None:
            sep = m.groupdict().get("sep") or "-"
            files.setdefault(m.group("path"), []).append((m.group("line"), sep, m.group("text")))
            hits += 1
            continue
        nl = _NO_LINE.match(line)
        if nl:
            files.setdefault(nl.group("path"), []).append(("", ":", nl.group("text")))
            hits += 1
            continue
        if _PATH.match(line) and ("/" in line or "." in line):
            # ripgrep --heading prints the path alone, then its matches.
            files.setdefault(line, [])
            heading = line
            hits += 1
            continue
        other.append(line)
    if hits < 0.6 * sum(1 for line in lines if line and line != "--"):
        return None
    return other, files


def _entry_line(entry: Entry) -> str:
    number, sep, text = entry
    text = text.strip()
    if not number:
        return " " + text
    return f" {number}{sep} {text}" if text else f" {number}{sep}"


def _group_paths(paths: list[str], ctx: Context, lossy: bool) -> tuple[list[str], int]:
    """``dir/: a, b, c`` lines for a plain list of paths; returns (lines, omitted paths)."""
    dirs: dict[str, list[str]] = {}
    for path in paths:
        head, _, name = path.rstrip("/").rpartition("/")
        name = name + ("/" if path.endswith("/") else "")
        dirs.setdefault(head + "/" if head else "./", []).append(name)
    out: list[str] = []
    omitted = 0
    per_dir = max(ctx.limits.max_items // 4, 5)
    for d, names in dirs.items():
        shown = names
        if lossy and len(names) > per_dir:
            hits = set(_term_rows(names, ctx))
            keep = keep_indices(len(names), per_dir, 0, sorted(hits))
            shown = [names[i] for i in keep]
            omitted += len(names) - len(shown)
        if any(", " in name for name in names):
            out.append(d)
            out.extend("  " + name for name in shown)
        else:
            out.append(f"{d}: {', '.join(shown)}")
        if len(shown) < len(names):
            out.append(f"  \u2026 {len(names) - len(shown)} more in {d}")
    return out, omitted


def _term_rows(texts: list[str], ctx: Context) -> list[int]:
    if not ctx.terms or not texts:
        return []
    return sorted(Joined(texts).texts_with(ctx.terms.scan_words))


def _render(other: list[str], files: dict[str, list[Entry]], ctx: Context, lossy: bool) -> tuple[list[str], int, int]:
    """(lines, omitted matches, total matches)."""
    lim = ctx.limits
    out = list(other)
    omitted = total = 0
    paths = list(files)
    if lossy and len(paths) > lim.max_items:
        path_hits = set(_term_rows(paths, ctx))
        for i, p in enumerate(paths):
            if _term_rows([e[2] for e in files[p]], ctx):
                path_hits.add(i)
        keep = keep_indices(len(paths), lim.head_items, lim.tail_items, sorted(path_hits))
        dropped = [p for i, p in enumerate(paths) if i not in set(keep)]
        omitted += sum(max(1, len(files[p])) for p in dropped)
        total += sum(max(1, len(files[p])) for p in dropped)
        paths = [paths[i] for i in keep]
        if dropped:
            out.append(f"\u2026 {len(dropped)} files omitted")
    for path in paths:
        entries = files[path]
        total += max(1, len(entries))
        if not entries:
            out.append(path)
            continue
        shown = entries
        if lossy and len(entries) > lim.max_matches_per_file:
            hits = _term_rows([e[2] for e in entries], ctx)
            keep = keep_indices(len(entries), lim.max_matches_per_file, 0, hits)
            shown = [entries[i] for i in keep]
        out.append(path if len(shown) == len(entries) else f"{path} ({len(entries)} matches, {len(shown)} shown)")
        out.extend(_entry_line(e) for e in shown)
        omitted += len(entries) - len(shown)
    return out, omitted, total


def compress(text: str, ctx: Context) -> Compressed | None:
    lines = [line.rstrip() for line in text.split("\n")]
    parsed = _parse(lines)
    if parsed is None:
        return None
    other, files = parsed
    for path, entries in files.items():  # drop duplicate matches, keep first occurrence order
        seen: set[Entry] = set()
        files[path] = [e for e in entries if not (e in seen or seen.add(e))]
    lossy = len(text) > ctx.limits.lossy_min_chars
    if all(not entries for entries in files.values()):
        body, omitted = _group_paths(list(files), ctx, lossy)
        body = other + body
        total = len(files)
        unit, name = "paths", "search:paths"
    else:
        body, omitted, total = _render(other, files, ctx, lossy)
        unit, name = "matches", "search:group"
    out = "\n".join(body)
    transforms = [name]
    if omitted:
        out = ccr.marker(omitted, total, unit, ctx.ccr_key) + "\n" + out
        transforms.append("search:lossy")
    elif len(out) > len(text) * (1 - MIN_SAVING) or out == text:  # (== : an empty block)
        return None
    return Compressed(out, tuple(transforms), omitted)
