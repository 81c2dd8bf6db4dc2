"""Shell commands that print one file: logs are compressed, source stays exact; a client's
header around the output (Codex) is looked through and sent on unchanged."""

from __future__ import annotations

import pytest

from headroom.transforms import commands, envelope
from headroom.transforms.base import Brief, Limits
from headroom.transforms.detect import Kind, detect, tool_hint
from headroom.transforms.router import compress_block
from headroom.transforms.terms import extract_terms

KEY = "0123456789abcdef"
CODEX_HEADER = ("Chunk ID: f234fc\nWall time: 0.0086 seconds\nProcess exited with code 0\n"
                "Original token count: 24\nOutput:\n")


def brief(question: str = "", **limits) -> Brief:
    return Brief(terms=extract_terms(question), ccr_key=KEY, limits=Limits(**limits))


def dpkg_lines(n: int = 400) -> list[str]:
    return [f"2026-11-01 10:{i // 60 % 60:02d}:{i % 60:02d} status installed lib{i}:amd64 2.36-{i}" for i in range(n)]


SOURCE = "\n".join(f"def handler_{i}(request):\n    return respond(request, {i})\n" for i in range(200))


@pytest.mark.parametrize("command, hint", [
    ("tail -400 /var/log/dpkg.log", "log"),
    ("cat /var/log/syslog", "log"),
    ("sed -n '/ERROR/p' logs/app.log.1", "log"),
    ("cd /srv/app && tail -n 200 log/production.log", "log"),
    ("journalctl -u nginx --no-pager | tail -200", "log"),
    ("kubectl -n prod logs deploy/api --since=1h", "log"),
    ("docker compose logs web", "log"),
    ("cat src/app.py", "file"),
    ("sed -n 1,80p headroom/proxy/routes.py", "file"),
    ("head -50 config/settings.yaml", "file"),
    ("git show HEAD:app.log", "log"),
    ("git show HEAD", "file"),  # a commit: a diff, kept exact
    ("cat /var/log/nginx/*.log", "log"),
    ("cat src/*", "file"),
    ("cat notes.txt", "view"),
    ("tail -n 100 output", "view"),
    ("pytest -q | tail -20", "shell"),
    ("ls -la", "shell"),
])
def test_what_a_command_shows(command, hint):
    assert tool_hint("Bash", {"command": command}) == hint


def test_codex_argument_forms():
    assert tool_hint("shell", {"command": ["bash", "-lc", "tail -400 /var/log/dpkg.log"]}) == "log"
    assert tool_hint("exec_command", {"cmd": "tail -n 300 /var/log/syslog", "yield_time_ms": 1000}) == "log"
    assert tool_hint("exec_command", {"cmd": "cat src/main.rs"}) == "file"
    assert tool_hint("shell_command", {"command": "rg -n TODO"}) == "shell"


def test_a_log_read_through_the_shell_is_compressed_as_a_log():
    lines = dpkg_lines()
    lines[250] = "2026-11-01 10:04:10 upgrade nginx:amd64 1.22.1-9 1.22.1-9+deb12u1"
    text = "\n".join(lines)
    kind, out = compress_block(text, "Bash", brief("which nginx version?"), {"command": "tail -400 /var/log/dpkg.log"})
    assert kind is Kind.LOG
    assert lines[250] in out.text and lines[120] not in out.text
    assert out.omitted > 300 and f"headroom_retrieve key={KEY} " in out.text


def test_a_file_of_unknown_type_is_a_log_only_if_it_reads_like_one():
    log = "\n".join(dpkg_lines(100))
    assert detect(log, "Bash", {"command": "cat notes.txt"}).kind is Kind.LOG
    assert detect(SOURCE, "Bash", {"command": "cat notes.txt"}).kind is Kind.CODE
    prose = "This is a note about the deployment.\n" * 60
    assert detect(prose, "Bash", {"command": "cat notes.txt"}).kind is Kind.CODE  # not a log: exact


def test_source_files_stay_exact_whatever_they_contain():
    log = "\n".join(dpkg_lines())
    for command in ("cat app.py", "tail -400 scripts/deploy.sh", "sed -n 1,400p data.csv"):
        assert compress_block(log, "Bash", brief(), {"command": command}) == (Kind.CODE, None)
    assert compress_block(SOURCE, "Bash", brief(), {"command": "cat /var/log/../app.py"})[1] is None


def test_codex_header_is_split_off_and_sent_unchanged():
    body = "\n".join(dpkg_lines())
    head, rest = envelope.split(CODEX_HEADER + body)
    assert (head, rest) == (CODEX_HEADER, body)
    found = detect(CODEX_HEADER + body, "exec_command", {"cmd": "tail -400 /var/log/dpkg.log"})
    assert found.kind is Kind.LOG and found.envelope == CODEX_HEADER
    _, out = compress_block(CODEX_HEADER + body, "exec_command", brief(), {"cmd": "tail -400 /var/log/dpkg.log"})
    assert out.text.startswith(CODEX_HEADER + "[headroom: ")
    assert out.omitted > 0


def test_codex_header_does_not_hide_a_table_or_json():
    rows = ["NAME                 READY   STATUS    RESTARTS   AGE"]
    rows += [f"web-{i:04d}-abcde       1/1     Running   0          3d" for i in range(300)]
    rows[150] = "worker-7f9c-x2kqp    0/1     Error     5          3d"
    kind, out = compress_block(CODEX_HEADER + "\n".join(rows), "exec_command", brief(), {"cmd": "kubectl get pods"})
    assert kind is Kind.TABLE
    assert out.text.startswith(CODEX_HEADER) and rows[150] in out.text and rows[0] in out.text
    doc = '[' + ",".join(f'{{"id": {i}, "state": "ok"}}' for i in range(50)) + ']'
    found = detect(CODEX_HEADER + doc, "exec_command", {"cmd": "curl -s localhost/api"})
    assert found.kind is Kind.JSON and found.envelope == CODEX_HEADER


def test_older_codex_header_and_text_that_only_looks_like_one():
    old = "Exit code: 1\nWall time: 0.3 seconds\nOutput:\n"
    assert envelope.split(old + "boom") == (old, "boom")
    assert envelope.split("Output:\nhello") == ("", "Output:\nhello")  # no header line before it
    assert envelope.split("Chunk ID: 1\nsomething else\nOutput:\nx")[0] == ""


def test_commands_module_reads_argv_and_strings_only():
    assert commands.command_text({"command": ["bash", "-lc", "cat a.py"]}) == "cat a.py"
    assert commands.command_text({"command": ["ls", "-la"]}) == "ls -la"
    assert commands.command_text({"cmd": 42}) is None
    assert commands.command_text(None) is None
