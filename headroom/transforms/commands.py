"""What a shell command shows, judged from its command line alone.

A command that only prints one file (``cat``, ``head``, ``tail``, ``sed -n``, ``git show``) is a
file view. Source and config files must reach the model byte for byte: the agent may edit
what it saw, and an edit made against a trimmed copy corrupts the file. A log is different:
nobody edits ``/var/log/dpkg.log``, and ``tail -400`` of it is 30 KB of lines the model skims
for one entry. So a view is classified by the path it prints:

* ``"file"``: a source, config or data file (by extension), or a view naming no path we can
  read (``git show HEAD``, a glob): kept exact;
* ``"log"``: a log by path (``*.log``, ``*.log.1``, anything under ``/var/log/`` or a
  ``logs/`` directory, ``syslog``, ``messages``), and commands that only stream logs
  (``journalctl``, ``dmesg``, ``docker logs``, ``kubectl logs``): compressed as log output;
* ``"view"``: any other file (``notes.txt``, ``output``): the content decides, and only
  content made of timestamped or level-prefixed lines is treated as a log;
* ``"shell"``: anything else.
"""

from __future__ import annotations

import re

_SHELL_WRAPPERS = frozenset(("bash", "sh", "zsh", "/bin/bash", "/bin/sh", "/bin/zsh", "/usr/bin/bash"))
_ARGUMENT_KEYS = ("command", "cmd")  # Claude Code / Codex ``shell``; Codex ``exec_command``

# A command that only prints files: no pipe, no redirection, no second command.
_FILE_VIEW = re.compile(
    r"^\s*(?:cd\s+\S+\s*&&\s*)?(?P<tool>cat|head|tail|nl|bat|less|more|sed\s+-n|git\s+show)\b"
    r"(?P<args>[^|;&<>`$]*)$"
)
_LOG_COMMAND = re.compile(
    r"^\s*(?:cd\s+\S+\s*&&\s*)?(?:sudo\s+)?(?:journalctl|dmesg|stern"
    r"|(?:docker|podman|nerdctl)(?:\s+compose|-compose)?(?:\s+-{1,2}[\w-]+(?:[= ]\S+)?)*\s+logs"
    r"|(?:kubectl|oc)(?:\s+-{1,2}[\w-]+(?:[= ]\S+)?)*\s+logs)\b"
)

_LOG_NAME = re.compile(r"\.log(?:\.\d+)?$|^(?:syslog|messages|kern|auth|daemon|dmesg)(?:\.\d+)?$")
_LOG_DIR = re.compile(r"(?:^|/)(?:var/log|logs)/")
# Extensions of files an agent reads to understand or change them: always exact.
_EXACT_EXT = frozenset(
    "py pyi pyx ipynb js mjs cjs jsx ts tsx mts cts vue svelte astro go rs java kt kts scala groovy "
    "gradle c h cc cpp cxx hpp hh hxx m mm cs fs vb swift dart rb php pl pm lua r jl ex exs erl "
    "hrl clj cljs elm hs ml mli nim zig sol sh bash zsh fish ps1 bat cmd sql graphql gql proto "
    "thrift html htm xml xsl css scss sass less json jsonc json5 yaml yml toml ini cfg conf "
    "properties env lock md mdx rst adoc tex csv tsv tf tfvars hcl nix dockerfile mk cmake "
    "gitignore editorconfig patch diff".split()
)
_EXACT_NAMES = frozenset("dockerfile makefile gemfile rakefile procfile justfile vagrantfile".split())


def command_text(tool_input: dict | None) -> str | None:
    """A shell call's command line: a string, or an argv list as the Codex CLI sends it
    (``["bash", "-lc", "cat x.py"]`` is the script ``cat x.py``; other argv lists are joined)."""
    if not isinstance(tool_input, dict):
        return None
    for key in _ARGUMENT_KEYS:
        command = tool_input.get(key)
        if isinstance(command, str):
            return command
        if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
            if len(command) == 3 and command[0] in _SHELL_WRAPPERS and command[1] in ("-c", "-lc", "-l", "-ic"):
                return command[2]
            return " ".join(command)
    return None


def classify(command: str) -> str:
    """``"file"``, ``"log"``, ``"view"`` or ``"shell"`` for one command line (see module doc)."""
    view = _FILE_VIEW.match(command)
    if view is None:
        return "log" if _LOG_COMMAND.match(command) else "shell"
    paths = _paths(view.group("tool"), view.group("args").split())
    kinds = {_path_kind(path) for path in paths}
    if not kinds or "file" in kinds:
        return "file"
    return "log" if kinds == {"log"} else "view"


def _paths(tool: str, args: list[str]) -> list[str]:
    """The file operands of a viewing command (options, counts and sed scripts skipped)."""
    words = [a.strip("'\"") for a in args if a and not a.startswith(("-", "+"))]
    words = [w for w in words if w and not w.replace(",", "").replace("$", "").isdigit()]
    if tool.startswith("sed") and words:
        words = words[1:]  # the script: 'sed -n 1,80p file', 'sed -n /ERR/p file'
    if tool.startswith("git"):
        words = [w.split(":", 1)[1] for w in words if ":" in w]  # HEAD:path; a bare commit is a diff
    return words


def _path_kind(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    if not name:
        return "file"
    ext = name.rsplit(".", 1)[-1] if "." in name.lstrip(".") else ""
    if ext in _EXACT_EXT or name in _EXACT_NAMES or name.lstrip(".") in _EXACT_EXT:
        return "file"
    if _LOG_NAME.search(name) or _LOG_DIR.search(path):
        return "log"  # (globs too: ``/var/log/nginx/*.log``)
    if any(c in name for c in "*?[{"):
        return "file"  # any other glob: files of any kind, judge nothing
    return "view"
