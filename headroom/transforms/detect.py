"""What kind of content a block holds, from the tool that produced it and the text itself.

The tool name decides first when it is unambiguous: a file read (``Read``, ``read_file``…)
is returned exactly, because an agent that edits the file needs every byte; a search tool
(``Grep``, ``Glob``…) produces search results. A shell command that prints one file is a file
read too, unless the file is a log (by path, or for a path that says nothing, by content: see
:mod:`commands`). Otherwise the text decides: JSON if it parses, then grep-style lines, source
code, aligned tables, stack traces, logs and command output, plain text. A client's header
around a command's output (Codex: ``Chunk ID: …`` … ``Output:``) is looked through, and
reported in ``envelope`` so that it is sent on unchanged. Only a sample of lines is inspected
so detection stays cheap on large blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum
from itertools import pairwise

from headroom.transforms import aligned, commands, envelope
from headroom.transforms.json_format import RAW_DECODER, loads


class Kind(str, Enum):
    JSON = "json"
    LOG = "log"
    SEARCH = "search"
    CODE = "code"  # source code, file reads: never changed
    DIFF = "diff"  # a command's unified diff (a patch file read as a file is CODE)
    TABLE = "table"
    TEXT = "text"


@dataclass(frozen=True)
class Detection:
    kind: Kind
    value: object = None  # the parsed document for JSON
    prefix: str = ""  # JSON only: short text around the document ("HTTP/1.1 200 OK", "exit 0")
    suffix: str = ""
    envelope: str = ""  # a client's header before the output (kept as is; the rest is judged)


FILE_TOOLS = frozenset(
    "read read_file readfile notebookread view view_file open_file cat get_file_contents "
    "file_read edit multiedit write write_file create_file str_replace_editor "
    "str_replace_based_edit_tool apply_patch notebookedit edit_file".split()
)
SEARCH_TOOLS = frozenset(
    "grep search ripgrep rg search_files find_in_files code_search grep_search glob "
    "find_files list_files ls list_dir list_directory file_search codebase_search".split()
)
SHELL_TOOLS = frozenset(
    "bash shell run_command execute_command terminal exec run_terminal_cmd "
    "run_shell_command powershell command exec_command shell_command local_shell".split()
)


def tool_hint(tool_name: str | None, tool_input: dict | None = None) -> str:
    """"file", "search", "shell", "log", "view" or "" for a tool call (MCP prefixes ignored).

    A shell command that only prints one file is "file" (kept exact), "log" (a log by its
    path, or a log-streaming command) or "view" (a file its path says nothing about: the
    content decides); see :func:`commands.classify`.
    """
    if not tool_name:
        return ""
    name = tool_name.rsplit("__", 1)[-1].lower()
    if name in FILE_TOOLS:
        return "file"
    if name in SEARCH_TOOLS:
        return "search"
    if name in SHELL_TOOLS:
        command = commands.command_text(tool_input)
        return "shell" if command is None else commands.classify(command)
    return ""


_SAMPLE_LINES = 80  # first and last 40 lines, each cut at 300 characters
_SAMPLE_WIDTH = 300
# path:line: or path-line- where the path has a slash or ends in .ext (timestamps do neither)
_GREP_LINE = re.compile(r"^(?:[^\s:]*/[^\s:]*|[^\s:/]+\.[A-Za-z]\w{0,9})[:-]\d+[:-]")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\b\d\d:\d\d:\d\d\b")
_PATH_LINE = re.compile(r"^\.{0,2}/?[\w@.+\-]+(?:/[\w@.+\- ]+)*(?:\.\w{1,10}|/)$")
_NUMBERED = re.compile(r"^\s*(\d+)(?:\t|\u2192)")  # `cat -n` / Claude Code Read output
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |return\b|if\b.*[:{]$|elif |else\b|for\b.*[:{]$|"
    r"while\b|try\b|except\b|catch\b|function\b|const |let |var |export |public |private |"
    r"protected |package |#include|fn |func |impl\b|struct |interface |type \w+ = |@\w+|"
    r"[}\])];?,?$|//|/\*|\* |\*/|#!|<\?php)"
)
_CODE_END = re.compile(r"[{};:,(]\s*$")
_HEADING = re.compile(r"^#{1,6} \S")  # a Markdown (ATX) heading
_STRONG_CODE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |return\b|function\b|const |let |var |public |private |"
    r"#include|fn |func )"
)
_FENCE = "```"
_DIFF = re.compile(r"^(?:diff --git |--- a/|\+\+\+ b/|@@ -\d)")
_LOG_MARK = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\b\d\d:\d\d:\d\d\b|\b(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE|FATAL)\b"
    r"|\b(?:PASSED|FAILED|PASS|FAIL|SKIPPED|ok|Compiling|Building|Downloading|Installing|Running|Step)\b"
    r"|^\s*(?:\[\d|#\d+ |\d+(?:\.\d+)?%|npm (?:ERR|WARN)|error(?:\[\w+\])?:|warning:)"
)
_TABLE_SPLIT = re.compile(r"\S(?: ?\S)*")
# A line that opens with a timestamp or a level: what a log file is made of (dpkg, syslog,
# nginx, glog, Python logging, JSON lines).
_LOG_START = re.compile(
    r"^\[?(?:\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d\d:\d\d:\d\d"
    r"|\d{10}(?:\.\d+)?\b|[IWEF]\d{4} \d\d:\d\d|(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL)\b)"
    r"|^\S+ \S+ \S+ \[\d\d/[A-Z][a-z]{2}/\d{4}:|^\{\s*\"(?:ts|time|timestamp|@timestamp|level|severity)\""
)
# Stack-trace lines: Python, Java/Kotlin/JS frames, Go, "... 12 more", and the lines that open a trace.
_FRAME = re.compile(
    r"^\s+(?:File \"[^\"]+\", line \d+|at \S|\.\.\. \d+ (?:more|common frames omitted)|\S+\.go:\d+"
    r"|\[Previous line repeated)"
    r"|^(?:Traceback \(most recent call last\)|Caused by: |Exception in thread |panic: |goroutine \d+ \[)"
)


def _sample(lines: list[str]) -> list[str]:
    if len(lines) > _SAMPLE_LINES:
        half = _SAMPLE_LINES // 2
        lines = lines[:half] + lines[-half:]
    return [line[:_SAMPLE_WIDTH] for line in lines]


def _markdown_code_share(lines: list[str]) -> float | None:
    """For a Markdown document, the share of its lines inside fenced code blocks; None when
    ``lines`` are not one: fewer than two headings outside fences, neither a fence pair nor a
    Markdown link, or code statements outside fences (a script's ``# comments`` are no
    headings). A README or documentation page fetched as text has bullets (``* item``) and
    prose lines ending in ``:`` that read as code line by line; its code is what sits between
    its fences."""
    inside = False
    fences = fenced = headings = statements = links = 0
    for line in lines:
        if line.lstrip().startswith(_FENCE):
            inside = not inside
            fences += 1
        elif inside:
            fenced += 1
        elif _HEADING.match(line):
            headings += 1
        elif _STRONG_CODE.match(line):
            statements += 1
        elif "](" in line:
            links += 1
    if headings < 2 or not (fences >= 2 or links) or statements > 0.05 * len(lines):
        return None
    return fenced / len(lines)


def _share(lines: list[str], pattern: re.Pattern) -> float:
    if not lines:
        return 0.0
    return sum(1 for line in lines if pattern.search(line)) / len(lines)


def _share_at_start(lines: list[str], pattern: re.Pattern) -> float:
    """Like :func:`_share` for a pattern that only matches at the start of a line (cheaper)."""
    if not lines:
        return 0.0
    return sum(1 for line in lines if pattern.match(line)) / len(lines)


def _numbered_file(lines: list[str]) -> bool:
    """``cat -n`` / Claude Code Read output: numbered lines whose numbers count up by one
    (``du``'s and ``wc -l``'s "number<TAB>path" rows have numbers that do not)."""
    numbers = [m.group(1) for m in map(_NUMBERED.match, lines) if m]
    if len(numbers) <= 0.6 * len(lines):
        return False
    steps = sum(1 for a, b in pairwise(numbers) if int(b) == int(a) + 1)
    return steps >= 0.6 * (len(numbers) - 1)


def _tab_separated(lines: list[str]) -> bool:
    """Rows of the same number (≥ 2) of tab-separated fields (``du``, ``cut``, TSV files)."""
    counts = [line.count("\t") for line in lines]
    return counts[0] >= 1 and sum(1 for c in counts if c == counts[0]) >= 0.9 * len(lines)


def _looks_like_table(lines: list[str]) -> bool:
    """Aligned columns: a markdown table, a header and rows splitting into the same number
    (≥ 3) of cells, tab-separated fields, or a command's whitespace-aligned table (see :mod:`aligned`)."""
    if len(lines) < 5:
        return False
    if _tab_separated(lines):
        return True
    if sum(1 for line in lines if line.startswith("|") and line.rstrip().endswith("|")) >= 0.8 * len(lines):
        return True
    header = lines[0]
    cols = len(_TABLE_SPLIT.findall(header))
    if cols >= 3 and any(c.isupper() for c in header):
        same = sum(1 for line in lines[1:] if len(_TABLE_SPLIT.findall(line)) == cols)
        if same >= 0.8 * (len(lines) - 1):
            return True
    return aligned.find(lines) is not None


def _looks_like_log_file(lines: list[str]) -> bool:
    """Most lines open with a timestamp or a level, and hardly any look like code."""
    if _share_at_start(lines, _LOG_START) < 0.6:
        return False
    return sum(1 for line in lines if _CODE_LINE.match(line)) < 0.1 * len(lines)


_RAW = RAW_DECODER
_JSON_START = re.compile(r"^[ \t]*[\[{]", re.MULTILINE)
_MAX_AROUND = 300  # characters of non-JSON text allowed around an embedded document


def _embedded_json(text: str) -> Detection | None:
    """A JSON document with a little text around it (``curl -i`` headers, a trailing
    "exit code 1"): compress the document, keep the text around it as is."""
    match = _JSON_START.search(text, 0, _MAX_AROUND + 1)
    if match is None:
        return None
    start = match.end() - 1
    try:
        value, end = _RAW.raw_decode(text, start)
    except ValueError:
        return None
    if not isinstance(value, (dict, list)) or start + len(text) - end > max(_MAX_AROUND, len(text) // 20):
        return None
    return Detection(Kind.JSON, value, text[:start], text[end:])


def detect(text: str, tool_name: str | None = None, tool_input: dict | None = None) -> Detection:
    hint = tool_hint(tool_name, tool_input)
    if hint == "file":
        return Detection(Kind.CODE)
    head, body = envelope.split(text)
    found = _detect_output(body, hint)
    return replace(found, envelope=head) if head else found


def _detect_output(text: str, hint: str) -> Detection:
    if hint == "view":  # one file of unknown type: a log if it reads like one, else exact
        lines = [line for line in _sample(text.split("\n")) if line.strip()]
        return Detection(Kind.LOG if lines and _looks_like_log_file(lines) else Kind.CODE)
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            return Detection(Kind.JSON, loads(stripped))
        except ValueError:
            pass
    if hint == "log":
        return Detection(Kind.LOG)
    embedded = _embedded_json(text)
    if embedded is not None:
        return embedded
    lines = [line for line in _sample(text.split("\n")) if line.strip()]
    if not lines:
        return Detection(Kind.TEXT)
    if _numbered_file(lines):
        return Detection(Kind.CODE)
    if _share(lines, _DIFF) > 0.02 and (_DIFF.match(lines[0]) or lines[0].startswith("commit ")):
        return Detection(Kind.DIFF)
    grep_share = _share(lines, _GREP_LINE)
    if grep_share > 0.6 or (hint == "search" and grep_share > 0.3):
        return Detection(Kind.SEARCH)
    if len(lines) >= 5 and _share(lines, _PATH_LINE) > 0.8:
        return Detection(Kind.SEARCH)
    if hint == "search":
        return Detection(Kind.TEXT)
    if _looks_like_table(lines) and _share(lines, _TIMESTAMP) < 0.3:
        return Detection(Kind.TABLE)
    if _share_at_start(lines, _FRAME) >= 0.25:
        return Detection(Kind.LOG)  # a stack trace (its code lines must not make it "code")
    log_share = _share(lines, _LOG_MARK)
    code_share = _markdown_code_share(lines)
    if code_share is None:
        code_share = sum(1 for line in lines if _CODE_LINE.match(line) or _CODE_END.search(line)) / len(lines)
    if code_share > 0.45 and log_share < 0.2 and len(lines) >= 5:
        return Detection(Kind.CODE)
    if log_share >= 0.25 or (hint == "shell" and len(lines) >= 20):
        return Detection(Kind.LOG)
    return Detection(Kind.TEXT)
