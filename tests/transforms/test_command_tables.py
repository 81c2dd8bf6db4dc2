"""Whitespace-aligned command tables (``ps aux``, ``df -h``, ``docker ps``, ``netstat``,
``ls -l``, ``kubectl get``): detected by alignment, trimmed like JSON arrays."""

from __future__ import annotations

import re

from headroom.transforms import aligned, table_compressor
from headroom.transforms.base import Brief, Limits
from headroom.transforms.detect import Kind, detect
from headroom.transforms.terms import extract_terms

KEY = "0123456789abcdef"


def brief(question: str = "", **limits) -> Brief:
    return Brief(terms=extract_terms(question), ccr_key=KEY, limits=Limits(**limits))


def marker(text: str) -> tuple[int, int]:
    m = re.match(rf"\[headroom: (\d+) of (\d+) rows omitted \(lines [^)]+\); headroom_retrieve key={KEY} [^\]]*\]\n",
                 text)
    assert m, text[:120]
    return int(m.group(1)), int(m.group(2))


def ps_aux(n: int = 300) -> list[str]:
    lines = ["USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND"]
    for i in range(n):
        cpu = "0.0" if i % 7 else "0.3"
        lines.append(f"{'root':<8} {1000 + i:>7} {cpu:>4} {'0.1':>4} {160000 + i:>6} {11000 + i:>5} "
                     f"{'?':<8} {'Ss':<4} {'Nov01':<5} {'0:05':>6} /usr/lib/worker --id {i}")
    return lines


def df(n: int = 200) -> list[str]:
    lines = ["Filesystem      Size  Used Avail Use% Mounted on"]
    for i in range(n):
        use = f"{10 + i % 60}%"
        lines.append(f"{'/dev/loop' + str(i):<15} {'56M':>4} {'56M':>5} {'0':>5} {use:>4} /snap/core/{i}")
    return lines


def test_column_layouts_of_common_commands():
    layout = aligned.find(ps_aux(10))
    assert layout.names[:3] == ("USER", "PID", "%CPU") and layout.names[-1] == "COMMAND"
    assert layout.cells(ps_aux(10)[4]) == ["root", "1003", "0.0", "0.1", "160003", "11003", "?", "Ss", "Nov01",
                                           "0:05", "/usr/lib/worker --id 3"]
    layout = aligned.find(df(10))
    assert layout.cells(df(10)[3])[:6] == ["/dev/loop2", "56M", "56M", "0", "12%", "/snap/core/2"]
    pods = ["NAME          READY   STATUS             RESTARTS         AGE",
            "api-1         1/1     Running            0                3d",
            "api-2         0/1     CrashLoopBackOff   47 (3m12s ago)   3d",
            "api-3         1/1     Running            0                3d",
            "api-4         1/1     Running            0                3d"]
    assert aligned.find(pods).cells(pods[2]) == ["api-2", "0/1", "CrashLoopBackOff", "47 (3m12s ago)", "3d"]


def test_preambles_and_headerless_listings():
    netstat = ["Active Internet connections (only servers)",
               "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name"]
    netstat += [f"tcp        0      0 {'127.0.0.1:' + str(5000 + i):<24}{'0.0.0.0:*':<24}LISTEN      {800 + i}/python"
                for i in range(10)]
    layout = aligned.find(netstat)
    assert layout.header == 1 and layout.names[0] == "Proto"
    ls = ["total 48"] + [f"-rw-r--r--  1 alice staff  {1000 + i:>6} Nov  1 10:00 file {i}.txt" for i in range(10)]
    layout = aligned.find(ls)
    assert layout.first_row == 1 and layout.cells(ls[3])[4] == "1002" and layout.cells(ls[3])[-1] == "file 2.txt"


def test_not_tables():
    prose = ["The Quick brown fox jumps over the lazy dog and keeps running far away"] * 3 + [
        "while the other animals watch from a distance and wonder why it does so"] * 5
    assert aligned.find(prose) is None
    log = [f"2026-11-01T10:00:{i:02d}Z INFO request {i} done in {i}ms" for i in range(20)]
    assert aligned.find(log) is None


def test_command_tables_are_detected():
    assert detect("\n".join(ps_aux(30)), "Bash", {"command": "ps aux"}).kind is Kind.TABLE
    assert detect("\n".join(df(30)), "Bash", {"command": "df -h"}).kind is Kind.TABLE
    widths = (15, 15, 25, 16, 20, 10)
    header = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS")
    docker = ["".join(h.ljust(w) for h, w in zip(header, widths)) + "NAMES"]
    for i in range(12):
        row = (f"{i:012x}", "nginx:1.25", '"/docker-entrypoint.…"', f"{i + 2} hours ago", f"Up {i + 2} hours", "80/tcp")
        docker.append("".join(c.ljust(w) for c, w in zip(row, widths)) + f"web{i}")
    assert detect("\n".join(docker), "Bash", {"command": "docker ps"}).kind is Kind.TABLE
    cells = aligned.find(docker).cells(docker[9])
    assert "Up 10 hours" in cells and "10 hours ago" in cells and cells[-1] == "web8"


def test_process_table_keeps_header_once_outliers_and_question_rows():
    lines = ps_aux()
    lines[200] = lines[200].replace("  0.0 ", " 99.8 ").replace("/usr/lib/worker --id 199", "/usr/bin/python3 etl.py")
    lines[120] = lines[120].replace("--id 119", "--id 119 --queue invoices")
    out = table_compressor.compress("\n".join(lines), brief("is the invoices worker running?"))
    rows = out.text.split("\n")
    assert rows[1] == lines[0] and out.text.count("%CPU") == 1
    assert lines[200] in rows and lines[120] in rows  # the CPU spike and the question's row
    assert lines[1] in rows and lines[-1] in rows and lines[150] not in rows
    omitted, total = marker(out.text)
    assert total == 300 and omitted == out.omitted == 300 - sum(1 for r in rows if r.startswith("root"))
    assert "rows omitted" in out.text


def test_disk_table_keeps_the_full_disk():
    lines = df()
    lines[90] = "/dev/nvme0n1p2  468G  468G     0 100% /"
    out = table_compressor.compress("\n".join(lines), brief())
    assert lines[90] in out.text and lines[60] not in out.text


def test_listing_keeps_preamble_and_big_files():
    lines = ["total 4812"] + [f"-rw-r--r--  1 alice staff  {1000 + i % 50:>8} Nov  1 10:00 part-{i:04d}.csv"
                              for i in range(300)]
    lines[170] = "-rw-r--r--  1 alice staff  98765432 Nov  1 10:00 part-0169.csv"
    out = table_compressor.compress("\n".join(lines), brief())
    rows = out.text.split("\n")
    assert rows[1] == "total 4812" and lines[170] in rows
    assert marker(out.text)[1] == 300


def test_small_tables_are_left_alone():
    assert table_compressor.compress("\n".join(ps_aux(20)), brief()) is None


def test_the_same_table_gives_the_same_bytes():
    text = "\n".join(ps_aux())
    assert table_compressor.compress(text, brief("worker 17")) == table_compressor.compress(text, brief("worker 17"))
