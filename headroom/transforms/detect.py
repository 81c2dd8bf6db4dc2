"""What kind of content a block holds, from the tool that produced it and the text itself.

The tool name decides first when it is unambiguous: a file read (``Read``, ``read_file``…)
is returned exactly, because an agent that edits the file needs every byte; a search tool
(``Grep``, ``Glob``…) produces search results. Otherwise the text decides: JSON if it parses,
then grep-style lines, source code, aligned tables, logs and command output, plain text.
Only a sample of lines is inspected so detection stays cheap on large blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from headroom.transforms.json_format import RAW_DECODER, loads


class Kind(str, Enum):
    JSON = "json"
    LOG = "log"
    SEARCH = "search"
    CODE = "code"  # source code, file reads, diffs: never changed
    TABLE = "table"
    TEXT = "text"


@dataclass(frozen=True)
class Detection:
    kind: Kind
    value: object = None  # the parsed document for JSON
    prefix: str = ""  # JSON only: short text around the document ("HTTP/1.1 200 OK", "exit 0")
    suffix: str = ""


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
    "run_shell_command powershell command".split()
)


# A shell command that only prints one file (``cat x.json``, ``sed -n 1,80p app.py``) is a file
# read too: the agent may edit that file from what it saw, so it must see the exact bytes.
_FILE_VIEW = re.compile(
    r"^\s*(?:cd\s+\S+\s*&&\s*)?(?:cat|head|tail|nl|bat|less|more|sed\s+-n|git\s+show)\b[^|;&<>`$]*$"
)


def tool_hint(tool_name: str | None, tool_input: dict | None = None) -> str:
    """"file", "search", "shell" or "" for a tool call (MCP prefixes ignored)."""
    if not tool_name:
        return ""
    name = tool_name.rsplit("__", 1)[-1].lower()
    if name in FILE_TOOLS:
        return "file"
    if name in SEARCH_TOOLS:
        return "search"
    if name in SHELL_TOOLS:
        command = _command_text(tool_input.get("command") if isinstance(tool_input, dict) else None)
        if command is not None and _FILE_VIEW.match(command):
            return "file"
        return "shell"
    return ""


_SHELL_WRAPPERS = frozenset(("bash", "sh", "zsh", "/bin/bash", "/bin/sh", "/bin/zsh", "/usr/bin/bash"))


def _command_text(command) -> str | None:
    """A shell call's command line: a string, or an argv list as the Codex CLI sends it
    (``["bash", "-lc", "cat x.py"]`` is the script ``cat x.py``; other argv lists are joined)."""
    if isinstance(command, str):
        return command
    if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
        if len(command) == 3 and command[0] in _SHELL_WRAPPERS and command[1] in ("-c", "-lc", "-l", "-ic"):
            return command[2]
        return " ".join(command)
    return None


_SAMPLE_LINES = 80  # first and last 40 lines, each cut at 300 characters
_SAMPLE_WIDTH = 300
# path:line: or path-line- where the path has a slash or ends in .ext (timestamps do neither)
_GREP_LINE = re.compile(r"^(?:[^\s:]*/[^\s:]*|[^\s:/]+\.[A-Za-z]\w{0,9})[:-]\d+[:-]")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\b\d\d:\d\d:\d\d\b")
_PATH_LINE = re.compile(r"^\.{0,2}/?[\w@.+\-]+(?:/[\w@.+\- ]+)*(?:\.\w{1,10}|/)$")
_NUMBERED = re.compile(r"^\s*\d+(?:\t|\u2192)")  # `cat -n` / Claude Code Read output
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |return\b|if\b.*[:{]$|elif |else\b|for\b.*[:{]$|"
    r"while\b|try\b|except\b|catch\b|function\b|const |let |var |export |public |private |"
    r"protected |package |#include|fn |func |impl\b|struct |interface |type \w+ = |@\w+|"
    r"[}\])];?,?$|//|/\*|\* |\*/|#!|<\?php)"
)
_CODE_END = re.compile(r"[{};:,(]\s*$")
_DIFF = re.compile(r"^(?:diff --git |--- a/|\+\+\+ b/|@@ -\d)")
_LOG_MARK = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\b\d\d:\d\d:\d\d\b|\b(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE|FATAL)\b"
    r"|\b(?:PASSED|FAILED|PASS|FAIL|SKIPPED|ok|Compiling|Building|Downloading|Installing|Running|Step)\b"
    r"|^\s*(?:\[\d|#\d+ |\d+(?:\.\d+)?%|npm (?:ERR|WARN)|error(?:\[\w+\])?:|warning:)"
)
_TABLE_SPLIT = re.compile(r"\S(?: ?\S)*")


def _sample(lines: list[str]) -> list[str]:
    if len(lines) > _SAMPLE_LINES:
        half = _SAMPLE_LINES // 2
        lines = lines[:half] + lines[-half:]
    return [line[:_SAMPLE_WIDTH] for line in lines]


def _share(lines: list[str], pattern: re.Pattern) -> float:
    if not lines:
        return 0.0
    return sum(1 for line in lines if pattern.search(line)) / len(lines)


def _looks_like_table(lines: list[str]) -> bool:
    """Aligned columns: a header and rows splitting into the same number (≥ 3) of cells."""
    if len(lines) < 5:
        return False
    if sum(1 for line in lines if line.startswith("|") and line.rstrip().endswith("|")) >= 0.8 * len(lines):
        return True
    header = lines[0]
    cols = len(_TABLE_SPLIT.findall(header))
    if cols < 3 or not any(c.isupper() for c in header):
        return False
    same = sum(1 for line in lines[1:] if len(_TABLE_SPLIT.findall(line)) == cols)
    return same >= 0.8 * (len(lines) - 1)


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
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            return Detection(Kind.JSON, loads(stripped))
        except ValueError:
            pass
    embedded = _embedded_json(text)
    if embedded is not None:
        return embedded
    lines = [line for line in _sample(text.split("\n")) if line.strip()]
    if not lines:
        return Detection(Kind.TEXT)
    if _share(lines, _NUMBERED) > 0.6 or (_share(lines, _DIFF) > 0.02 and _DIFF.match(lines[0])):
        return Detection(Kind.CODE)
    grep_share = _share(lines, _GREP_LINE)
    if grep_share > 0.6 or (hint == "search" and grep_share > 0.3):
        return Detection(Kind.SEARCH)
    if len(lines) >= 5 and _share(lines, _PATH_LINE) > 0.8:
        return Detection(Kind.SEARCH)
    if hint == "search":
        return Detection(Kind.TEXT)
    if _looks_like_table(lines) and _share(lines, _TIMESTAMP) < 0.3:
        return Detection(Kind.TABLE)
    log_share = _share(lines, _LOG_MARK)
    code_share = sum(
        1 for line in lines if _CODE_LINE.match(line) or _CODE_END.search(line)
    ) / len(lines)
    if code_share > 0.45 and log_share < 0.2 and len(lines) >= 5:
        return Detection(Kind.CODE)
    if log_share >= 0.25 or (hint == "shell" and len(lines) >= 20):
        return Detection(Kind.LOG)
    return Detection(Kind.TEXT)
