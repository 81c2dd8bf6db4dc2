"""Search results (grep/ripgrep lines, file lists): group by file, fold repeats.

``src/a.py:12:foo`` repeated for every match spends tokens on the same path again and again;
grouped, each path is written once and each match as `` 12: foo`` (indentation of the matched
line is dropped; context lines keep their ``-`` separator). Identical matches are dropped.
Deep trees repeat long directories too: files sharing a directory at least three levels deep
are listed under it once (``src/headroom/proxy/`` then ``routes.py``, ``app.py``). The same
matched line found in many files (an import, a config key) is written once with its count
and its ``file:line`` locations; the same line matched several times in one file becomes one
entry with all its line numbers (`` 10,50,90: raise``). File lists (``Glob``, ``find``,
``grep -l``) are grouped by directory. All of this is lossless.

Lossy, only above ``lossy_min_chars``: each file keeps its first few matches plus every match
with a selective question term; files beyond ``max_items`` keep only those with question
matches besides the first and last ones; a line common to many files keeps its first few
locations and those with a question term. Notes say what was left out; a CCR marker on the
first line gives the key to the full results.
"""

from __future__ import annotations

import re

from headroom.transforms import ccr
from headroom.transforms.base import Brief, Compressed
from headroom.transforms.scan import Joined
from headroom.transforms.select import keep_indices, term_hits

_MATCH = re.compile(r"^(?P<path>[^\s:][^:\n]*?):(?P<line>\d+)(?P<sep>[:-])(?P<text>.*)$")
_CONTEXT = re.compile(r"^(?P<path>[^\s:][^\n]*?)-(?P<line>\d+)-(?P<text>.*)$")
_NO_LINE = re.compile(r"^(?P<path>[^\s:]+\.\w{1,10}):(?P<text>.*)$")
_HEADING_ENTRY = re.compile(r"^(?P<line>\d+)(?P<sep>[:-])(?P<text>.*)$")
_PATH = re.compile(r"^\.{0,2}/?[\w@.+\-]+(?:/[\w@.+\- ]+)*(?:\.\w{1,10}|/)?$")
MIN_SAVING = 0.05
COMMON_FILES = 3  # a matched line found in this many files is written once, with its locations
FACTOR_DEPTH = 3  # directories at least this deep are written once above their files

Entry = tuple[str, str, str]  # (line number(s) or "", separator, text); "10,50" after folding
Location = tuple[str, str]  # (path, line number)


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


def _group_paths(paths: list[str], brief: Brief, lossy: bool) -> tuple[list[str], int]:
    """``dir/: a, b, c`` lines for a plain list of paths; returns (lines, omitted paths)."""
    dirs: dict[str, list[str]] = {}
    for path in paths:
        head, _, name = path.rstrip("/").rpartition("/")
        name = name + ("/" if path.endswith("/") else "")
        dirs.setdefault(head + "/" if head else "./", []).append(name)
    out: list[str] = []
    omitted = 0
    per_dir = max(brief.limits.max_items // 4, 5)
    for d, names in dirs.items():
        shown = names
        if lossy and len(names) > per_dir:
            hits = set(_term_rows(names, brief))
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


def _term_rows(texts: list[str], brief: Brief) -> list[int]:
    if not brief.terms or not texts:
        return []
    return sorted(Joined(texts).texts_with(brief.terms.scan_words))


def _weight(entry: Entry) -> int:
    """How many matches an entry stands for (a folded one lists several line numbers)."""
    return entry[0].count(",") + 1


def _common_lines(files: dict[str, list[Entry]]) -> tuple[dict[str, list[Location]], dict[str, list[Entry]]]:
    """Pull matched lines found in ``COMMON_FILES``+ files out of their files.

    Returns (text → its locations in file order, the files with what is left; a file whose
    matches were all common lines is dropped: it is listed under those lines).
    """
    seen_in: dict[str, set[str]] = {}
    for path, entries in files.items():
        for number, sep, text in entries:
            if number and sep == ":" and text.strip():
                seen_in.setdefault(text.strip(), set()).add(path)
    common = {t for t, paths in seen_in.items() if len(paths) >= COMMON_FILES}
    if not common:
        return {}, files
    found: dict[str, list[Location]] = {}
    rest: dict[str, list[Entry]] = {}
    for path, entries in files.items():
        kept = []
        for entry in entries:
            number, sep, text = entry
            key = text.strip()
            if number and sep == ":" and key in common:
                found.setdefault(key, []).append((path, number))
            else:
                kept.append(entry)
        if kept or not entries:
            rest[path] = kept
    return found, rest


def _fold_same(entries: list[Entry]) -> list[Entry]:
    """One file's identical matched lines → one entry listing every line number. Files
    with context lines (``-``) keep their order: there the lines are read in sequence."""
    if len(entries) < 2 or any(sep != ":" or not number for number, sep, _ in entries):
        return entries
    numbers: dict[str, list[str]] = {}
    for number, _, text in entries:
        numbers.setdefault(text.strip(), []).append(number)
    if len(numbers) == len(entries):
        return entries
    return [(",".join(nums), ":", text) for text, nums in numbers.items()]


def _directory(path: str) -> str:
    """The directory to list ``path`` under, or "" to write the path in full."""
    head, _, name = path.rpartition("/")
    return head + "/" if name and head.strip("./").count("/") >= FACTOR_DEPTH - 1 else ""


def _render_common(common: dict[str, list[Location]], brief: Brief, lossy: bool) -> tuple[list[str], int, int]:
    """``[same line in N files, ×M] text``, then its locations: ``dir/: a.py:3,90; b.py:7``."""
    out: list[str] = []
    omitted = total = 0
    for text, locations in common.items():
        total += len(locations)
        shown = locations
        if lossy and len(locations) > brief.limits.max_matches_per_file:
            hits = term_hits([path for path, _ in locations], brief.terms, brief.limits)
            shown = [locations[i] for i in keep_indices(len(locations), brief.limits.max_matches_per_file, 0, hits)]
        by_file: dict[str, list[str]] = {}
        for path, number in shown:
            by_file.setdefault(path, []).append(number)
        files = len({path for path, _ in locations})
        out.append(f"[same line in {files} files, \u00d7{len(locations)}] {text}")
        dirs: dict[str, list[str]] = {}
        for path, numbers in by_file.items():
            head, _, name = path.rpartition("/")
            dirs.setdefault(head + "/" if head else "", []).append(f"{name}:{','.join(numbers)}")
        out.extend(f" {d}: {'; '.join(names)}" if d else f" {'; '.join(names)}" for d, names in dirs.items())
        if len(shown) < len(locations):
            out[-1] += f" \u2026 {len(locations) - len(shown)} more locations omitted"
            omitted += len(locations) - len(shown)
    return out, omitted, total


def _render(other: list[str], common: dict[str, list[Location]], files: dict[str, list[Entry]],
            brief: Brief, lossy: bool) -> tuple[list[str], int, int]:
    """(lines, omitted matches, total matches)."""
    lim = brief.limits
    out, omitted, total = _render_common(common, brief, lossy)
    out = list(other) + out
    paths = list(files)
    hits = _entry_hits(paths, files, brief) if lossy else {}
    if lossy and len(paths) > lim.max_items:
        keep = keep_indices(len(paths), lim.head_items, lim.tail_items, sorted(hits))
        position = {i: k for k, i in enumerate(keep)}
        dropped = [p for i, p in enumerate(paths) if i not in position]
        dropped_matches = sum(max(1, sum(map(_weight, files[p]))) for p in dropped)
        omitted += dropped_matches
        total += dropped_matches
        paths = [paths[i] for i in keep]
        hits = {position[i]: found for i, found in hits.items() if i in position}
        if dropped:
            out.append(f"\u2026 {len(dropped)} files omitted")
    groups: dict[str, list[str]] = {}  # directory ("" for none) → its paths, in first-seen order
    for path in paths:
        groups.setdefault(_directory(path), []).append(path)
    factored = False
    index = {path: i for i, path in enumerate(paths)}
    for directory, members in _runs(paths, groups):
        if directory and len(members) > 1:
            out.append(directory)
            factored = True
        for path in members:
            name = path[len(directory):] if directory and len(members) > 1 else path
            if factored and not (directory and len(members) > 1) and "/" not in name:
                name = "./" + name  # not a file of the directory written above it
            lines, n_omitted, n_total = _render_file(name, files[path], hits.get(index[path], set()), brief, lossy)
            out.extend(lines)
            omitted += n_omitted
            total += n_total
    return out, omitted, total


def _runs(paths: list[str], groups: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Each factored directory's files together, at the place its first file was; files
    written in full stay where they were."""
    out: list[tuple[str, list[str]]] = []
    done: set[str] = set()
    for path in paths:
        directory = _directory(path)
        members = groups[directory]
        if directory and len(members) > 1:
            if directory not in done:
                done.add(directory)
                out.append((directory, members))
        else:
            out.append(("", [path]))
    return out


def _entry_hits(paths: list[str], files: dict[str, list[Entry]], brief: Brief) -> dict[int, set[int]]:
    """File index → indices of its entries with a selective question term (every entry when
    the term is in the path). Selective means rare among *all* matches: "log" in a search for
    logging calls names every line and so none in particular."""
    if not brief.terms:
        return {}
    texts: list[str] = []
    owners: list[tuple[int, int]] = []
    for i, path in enumerate(paths):
        for j, entry in enumerate(files[path]):
            texts.append(entry[2])
            owners.append((i, j))
    found: dict[int, set[int]] = {}
    for k in term_hits(texts, brief.terms, brief.limits):
        i, j = owners[k]
        found.setdefault(i, set()).add(j)
    for i in term_hits(paths, brief.terms, brief.limits):
        found.setdefault(i, set()).update(range(len(files[paths[i]])))
    return found


def _render_file(name: str, entries: list[Entry], hits: set[int], brief: Brief,
                 lossy: bool) -> tuple[list[str], int, int]:
    lim = brief.limits
    total = max(1, sum(map(_weight, entries)))
    if not entries:
        return [name], 0, total
    shown = entries
    if lossy and len(entries) > lim.max_matches_per_file:
        shown = [entries[i] for i in keep_indices(len(entries), lim.max_matches_per_file, 0, sorted(hits))]
    count = sum(map(_weight, shown))
    head = name if len(shown) == len(entries) else f"{name} ({total} matches, {count} shown)"
    return [head] + [_entry_line(e) for e in shown], total - count, total


def compress(text: str, brief: Brief) -> Compressed | None:
    lines = [line.rstrip() for line in text.split("\n")]
    parsed = _parse(lines)
    if parsed is None:
        return None
    other, files = parsed
    for path, entries in files.items():  # drop duplicate matches, keep first occurrence order
        files[path] = list(dict.fromkeys(entries))
    lossy = len(text) > brief.limits.lossy_min_chars
    if all(not entries for entries in files.values()):
        body, omitted = _group_paths(list(files), brief, lossy)
        body = other + body
        total = len(files)
        unit, name = "paths", "search:paths"
    else:
        common, files = _common_lines(files)
        files = {path: _fold_same(entries) for path, entries in files.items()}
        body, omitted, total = _render(other, common, files, brief, lossy)
        unit, name = "matches", "search:group"
    out = "\n".join(body)
    transforms = [name]
    if omitted:
        out = ccr.marker(omitted, total, unit, brief.ccr_key) + "\n" + out
        transforms.append("search:lossy")
    elif len(out) > len(text) * (1 - MIN_SAVING) or out == text:  # (== : an empty block)
        return None
    return Compressed(out, tuple(transforms), omitted)
