"""Real tool outputs, generated at test time, with questions drawn at random: the judge of compression.

The 21 corpus cases (:mod:`testkit.corpus`) were written by the people who wrote the
compressors; rules written against the cases one has seen fit those cases. This module runs
ordinary programs on this machine instead (``ps``, ``ls -l``, ``find``, ``du``, ``git log`` of
this repository, package stanzas, crashing Python and Node scripts, man pages, package
metadata as JSON, diffs of this repository's history, real logs) and, with a seeded random
generator, draws several questions per output about randomly chosen records and values, each
with the exact *needles* (strings) that must reach the model for the question to be answerable.

:func:`judge` runs every question through the real pipeline (default options, the question as
the newest user text) and reports, per kind and in total: tokens saved, needles in the
compressed context, needles only reachable by retrieval (in the stored original behind a
``[headroom: … key=… …]`` marker), and the worst cases.

Two seeds are kept apart (:data:`TUNE_SEED`, :data:`CHECK_SEED`): tune on one, report both.
``python load_tests/realworld.py`` prints the full table; the test suite runs a bounded sample.
Outputs depend on the machine (its processes, packages, this repository's history), so the
figures are measured, never hard-coded.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TUNE_SEED = 2201
CHECK_SEED = 7919
MAX_CHARS = 400_000  # outputs are cut (at a line) to this: a tool would truncate too
RUN_TIMEOUT = 30.0  # seconds per program


@dataclass(frozen=True)
class Question:
    text: str
    needles: tuple[str, ...]  # every one must reach the model
    same_line: bool = False  # ... on one line together (a folded path listing: its directory and name)


@dataclass(frozen=True)
class Output:
    kind: str
    command: str  # the shell command as the agent ran it (detection reads it)
    content: str
    questions: tuple[Question, ...]
    tool: str = "Bash"  # another tool (WebFetch) takes ``command`` as its URL


def _run(args: list[str] | str, cwd: Path | str = REPO, stdin: str | None = None, shell: bool = False,
         env: dict | None = None, limit: int | None = MAX_CHARS) -> str:
    """stdout and stderr of a program, as a shell tool would return them ('' if it is missing)."""
    full_env = {**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "COLUMNS": "120", "NO_COLOR": "1",
                "PAGER": "cat", "GIT_PAGER": "cat", **(env or {})}
    try:
        done = subprocess.run(args, cwd=cwd, input=stdin, shell=shell, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, env=full_env, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    out = done.stdout + done.stderr
    if limit is not None and len(out) > limit:
        out = out[:out.rfind("\n", 0, limit) + 1]
    return out


def _rows(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def _unique(lines: list[str], token: str) -> bool:
    """``token`` occurs on exactly one line (so a question naming it names one record)."""
    return sum(1 for line in lines if token in line) == 1


def _pick(rng: random.Random, items: list, k: int) -> list:
    return rng.sample(items, min(k, len(items)))


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{3,}")


# --- tables: ps, ls -l, du, wc -l, find, getconf, csv, markdown -------------------------------


def _row_questions(rng: random.Random, rows: list[str], key: Callable[[str], str | None], template: str,
                   k: int) -> tuple[Question, ...]:
    """Questions naming a row by ``key(row)`` (a token found on no other row); the row is the needle."""
    candidates = [(row, key(row)) for row in rows]
    candidates = [(row, name) for row, name in candidates if name and len(name) >= 4 and _unique(rows, name)]
    return tuple(Question(template.format(name=name), (row.rstrip(),)) for row, name in _pick(rng, candidates, k))


def _last_field(row: str) -> str | None:
    parts = row.split()
    return parts[-1] if parts else None


def gen_ps(rng: random.Random, k: int) -> Iterator[Output]:
    # comm, not args: other people's command lines may carry secrets
    command = "ps -eo pid,ppid,user,stat,rss,vsz,etime,comm"
    text = _run(command.split())
    rows = _rows(text)[1:]

    def key(row: str) -> str | None:
        parts = row.split()
        return f"{parts[0]}" if len(parts) >= 8 and len(parts[0]) >= 4 else None

    qs = _row_questions(rng, rows, key, "How much memory does process {name} use and who runs it?", k)
    yield Output("table:ps", command, text, qs)


def gen_ls(rng: random.Random, k: int) -> Iterator[Output]:
    for path in ("/usr/bin", "/usr/lib/x86_64-linux-gnu"):
        if not Path(path).is_dir():
            continue
        command = f"ls -l {path}"
        text = _run(["ls", "-l", path])
        qs = _row_questions(rng, _rows(text)[1:], lambda r: _last_field(r) if "->" not in r else None,
                            "How big is {name} in " + path + " and when was it last modified?", k)
        yield Output("table:ls", command, text, qs)


def _site() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def gen_du(rng: random.Random, k: int) -> Iterator[Output]:
    command = f"du -k --max-depth=2 {_site()}"
    text = _run(["du", "-k", "--max-depth=2", str(_site())])
    rows = _rows(text)

    def key(row: str) -> str | None:
        path = row.split("\t", 1)[-1]
        return path.rsplit("/", 1)[-1] if "/" in path else None

    yield Output("table:du", command, text, _row_questions(rng, rows, key, "How much disk space does {name} take?", k))


def gen_wc(rng: random.Random, k: int) -> Iterator[Output]:
    files = _run(["git", "ls-files"]).split()
    files = [f for f in files if f.endswith((".py", ".md", ".json", ".yml", ".toml"))]
    command = "git ls-files | xargs wc -l"
    text = _run(["wc", "-l", *files])
    rows = _rows(text)
    qs = _row_questions(rng, rows[:-1], lambda r: _last_field(r), "How many lines does {name} have?", k)
    yield Output("table:wc", command, text, qs)


def gen_find(rng: random.Random, k: int) -> Iterator[Output]:
    root = _site()
    for package in ("pip", "hypothesis"):
        if not (root / package).is_dir():
            continue
        command = f"find {root / package} -name '*.py'"
        text = _run(["find", str(root / package), "-name", "*.py"])
        rows = _rows(text)
        names = [r.rsplit("/", 1)[-1] for r in rows]

        def key(row: str, names=names) -> str | None:
            name = row.rsplit("/", 1)[-1]
            return name if names.count(name) == 1 and not name.startswith("_") else None

        qs = _row_questions(rng, rows, key, "Where is the file {name} in " + package + "?", k)
        # a listing may be folded by directory ("dir/: a.py, b.py"): the directory and the name on one line
        qs = tuple(Question(q.text, (q.needles[0].rsplit("/", 1)[0] + "/", q.needles[0].rsplit("/", 1)[1]), True)
                   for q in qs)
        yield Output("search:find", command, text, qs)


def gen_getconf(rng: random.Random, k: int) -> Iterator[Output]:
    text = _run(["getconf", "-a"])
    rows = _rows(text)
    def key(r):
        return (r.split()[0] if len(r.split()) >= 2 and "_" in r.split()[0] else None)
    yield Output("table:getconf", "getconf -a", text, _row_questions(rng, rows, key, "What is {name} set to?", k))


def _dists() -> list[tuple[str, str, str]]:
    from importlib import metadata

    seen: dict[str, tuple[str, str, str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name") or ""
        if name and name.lower() not in seen:
            summary = (dist.metadata.get("Summary") or "").replace("\n", " ").replace("|", "/")
            seen[name.lower()] = (name, dist.version, summary[:100])
    return [seen[k] for k in sorted(seen)]


_CSV_SCRIPT = ("import csv, sys\nfrom importlib import metadata\nw = csv.writer(sys.stdout, lineterminator='\\n')\n"
               "w.writerow(['name', 'version', 'summary'])\n"
               "rows = {(d.metadata['Name'] or '').lower(): d for d in metadata.distributions()}\n"
               "for key in sorted(rows):\n    d = rows[key]\n"
               "    w.writerow([d.metadata['Name'], d.version, (d.metadata['Summary'] or '')[:100]])\n")


def gen_csv(rng: random.Random, k: int) -> Iterator[Output]:
    text = _run([sys.executable, "-c", _CSV_SCRIPT])
    rows = _rows(text)[1:]
    def key(r):
        return (r.split(",", 1)[0])
    yield Output("table:csv", "python list_packages.py --csv", text,
                 _row_questions(rng, rows, key, "Which version of {name} is installed?", k))
    md = ["| name | version | summary |", "| --- | --- | --- |"]
    md += [f"| {n} | {v} | {s} |" for n, v, s in _dists()]
    md_rows = md[2:]
    yield Output("table:markdown", "python list_packages.py --markdown", "\n".join(md) + "\n",
                 _row_questions(rng, md_rows, lambda r: r.split("|")[1].strip(),
                                "Which version of {name} is installed?", k))


# --- records: git log, package stanzas --------------------------------------------------------


def _split_records(text: str, header: re.Pattern) -> list[list[str]]:
    records: list[list[str]] = []
    for line in text.split("\n"):
        if header.match(line) or not records:
            records.append([])
        records[-1].append(line)
    return records


_COMMIT = re.compile(r"^commit [0-9a-f]{40}")


def gen_git_log(rng: random.Random, k: int) -> Iterator[Output]:
    for args in (["git", "log", "--stat", "-n", "120"], ["git", "log", "-n", "300"]):
        text = _run(args)
        records = [r for r in _split_records(text, _COMMIT) if _COMMIT.match(r[0])]
        if len(records) < 10:
            continue
        questions: list[Question] = []
        for record in _pick(rng, records, k):
            commit = record[0].split()[1]
            subject = next((line.strip() for line in record[4:] if line.strip()), "")
            words = subject.split()
            start = rng.randrange(max(1, len(words) - 5))
            phrase = " ".join(words[start:start + 5]).strip("`'\"")
            if len(phrase) < 12 or sum(phrase in line for r in records for line in r) != 1:
                continue
            questions.append(Question(f'Which commit is "{phrase}" and who wrote it?', (commit,)))
        if "--stat" in args:  # a file changed by at most two commits: every one of them is the answer
            touched: dict[str, list[str]] = {}
            for record in records:
                for line in record:
                    if " | " in line and line.startswith(" "):
                        touched.setdefault(line.split(" | ")[0].strip(), []).append(record[0].split()[1])
            rare = sorted(p for p, commits in touched.items() if len(commits) <= 2 and "..." not in p)
            for path in _pick(rng, rare, max(1, k // 2)):
                questions.append(Question(f"Which commits changed {path}?", tuple(touched[path])))
        yield Output("records:git_log", " ".join(args), text, tuple(questions))


def _stanza_questions(rng: random.Random, text: str, name_key: str, k: int) -> tuple[Question, ...]:
    stanzas = [s for s in re.split(r"\n(?:---\n|\n)", text) if f"{name_key}: " in s]
    questions = []
    for stanza in _pick(rng, stanzas, k):
        fields = dict(line.split(": ", 1) for line in stanza.split("\n") if ": " in line and not line[:1].isspace())
        name, version = fields.get(name_key), fields.get("Version")
        if name and version and len(name) >= 3:
            questions.append(Question(f"Which version of {name} is installed?",
                                      (f"{name_key}: {name}", f"Version: {version}")))
    return tuple(questions)


def gen_stanzas(rng: random.Random, k: int) -> Iterator[Output]:
    if shutil.which("dpkg-query"):
        packages = sorted(_run(["dpkg-query", "-W", "-f", "${Package}\n"]).split())
        chosen = sorted(_pick(rng, packages, 60))
        text = _run(["dpkg", "-s", *chosen])
        yield Output("records:dpkg", "dpkg -s " + " ".join(chosen), text, _stanza_questions(rng, text, "Package", k))
        chosen = sorted(_pick(rng, packages, 25))
        text = _run(["apt-cache", "show", *chosen])
        if "Package: " in text:
            yield Output("records:apt_cache", "apt-cache show " + " ".join(chosen), text,
                         _stanza_questions(rng, text, "Package", k))
    names = sorted(_pick(rng, [n for n, _, _ in _dists()], 30))
    text = _run([sys.executable, "-m", "pip", "show", *names])
    yield Output("records:pip_show", "pip show " + " ".join(names), text, _stanza_questions(rng, text, "Name", k))


_INI_ROOTS = (sysconfig.get_paths()["purelib"], "/usr/lib/python3/dist-packages",
              "/usr/lib/google-cloud-sdk/platform/gsutil/third_party")
_INI_LINE = re.compile(r"^([A-Za-z_][\w.\-]*)\s*=\s*(\S.*)$")


def gen_ini(rng: random.Random, k: int, limit: int = 40_000) -> Iterator[Output]:
    """INI sections as they are on disk (the ``setup.cfg`` / ``tox.ini`` / ``mypy.ini`` files of
    installed packages), read with ``tail -n +1`` (a ``==> path <==`` line before each file):
    questions name a key, its section and its file; the ``key = value`` line is the needle."""
    files: list[Path] = []
    for root in _INI_ROOTS:
        for pattern in ("*/setup.cfg", "*/tox.ini", "*/mypy.ini"):
            files.extend(sorted(Path(root).glob(pattern)))
    chosen, size = [], 0
    for path in _pick(rng, files, len(files)):
        if size > limit:
            break
        chosen.append(str(path))
        size += path.stat().st_size
    if len(chosen) < 3:
        return
    text = _run(["tail", "-n", "+1", *chosen])
    lines = text.split("\n")
    candidates = []
    where, section = "", ""
    for line in lines:
        if line.startswith("==> ") and line.endswith(" <=="):
            where, section = line[4:-4], ""
        elif line.startswith("[") and line.rstrip().endswith("]"):
            section = line.strip()[1:-1]
        elif section and _INI_LINE.match(line) and lines.count(line) == 1 and len(line) < 120:
            candidates.append((where, section, line))
    questions = tuple(Question(f"What is {_INI_LINE.match(line).group(1)} set to in the [{section}] section of "
                               f"{where}?", (line.rstrip(),)) for where, section, line in _pick(rng, candidates, k))
    yield Output("records:ini", "tail -n +1 " + " ".join(chosen), text, questions)


def gen_apt_policy(rng: random.Random, k: int) -> Iterator[Output]:
    """``apt-cache policy`` of many packages: a block per package (``name:``, indented
    ``Installed:`` / ``Candidate:`` and a nested version table), the shape ``kubectl describe``
    prints. (No ``systemctl status`` or ``kubectl describe`` here: no systemd, no cluster.)"""
    if not shutil.which("apt-cache"):
        return
    packages = sorted(_run(["dpkg-query", "-W", "-f", "${Package}\n"]).split())
    chosen = sorted(_pick(rng, packages, 80))
    text = _run(["apt-cache", "policy", *chosen])
    lines = text.split("\n")
    questions = []
    for i, line in enumerate(lines):
        if line.startswith("  Installed: ") and i and lines[i - 1].endswith(":") and lines.count(line) == 1:
            questions.append(Question(f"Which version of {lines[i - 1][:-1]} is installed?", (line.strip(),)))
    yield Output("records:apt_policy", "apt-cache policy " + " ".join(chosen), text, tuple(_pick(rng, questions, k)))


# --- traces: crashing Python and Node programs --------------------------------------------------

_PY_CRASHES = {
    "mutual_recursion": """
def parse_expr(tokens, depth):
    return parse_term(tokens, depth + 1) + 0

def parse_term(tokens, depth):
    node = parse_factor(tokens, depth + 1)
    return node

def parse_factor(tokens, depth):
    return [parse_expr(tokens, depth + 1)][0]

parse_expr(["1", "+", "2"], 0)
""",
    "single_recursion": """
def walk(tree, path):
    return walk(tree, path + [len(path)])

walk({}, [])
""",
    "chained": """
import json

def load_settings(raw):
    try:
        return json.loads(raw)["database"]["port"]
    except KeyError as exc:
        raise ValueError(f"settings are missing {exc}") from exc

def connect(raw):
    try:
        return load_settings(raw)
    except ValueError:
        raise RuntimeError("could not start the billing worker")

connect('{"database": {"host": "db.internal"}}')
""",
    "during_handling": """
def read_config(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return defaults[path]

defaults = {}
read_config("/etc/billing/worker-7431.conf")
""",
    "exception_group": """
def check(name, value):
    if value < 0:
        raise ValueError(f"{name} must not be negative: {value}")
    if value > 100:
        raise OverflowError(f"{name} exceeds its limit: {value}")

errors = []
for i, v in enumerate([5, -3, 250, 17, -41, 900]):
    try:
        check(f"quota_{i}", v)
    except (ValueError, OverflowError) as exc:
        errors.append(exc)
raise ExceptionGroup("quota validation failed", [ExceptionGroup("tenant acme", errors[:2]), *errors[2:]])
""",
    "deep_library": """
import json, logging
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
log = logging.getLogger("importer")
rows = []
for i in range(400):
    log.info("imported row %d of batch %s (sku=SKU-%05d)", i, "b-2024-11", i * 7)
    rows.append(i)
log.warning("batch b-2024-11 has 3 rows without price")
payload = '{"rows": [' + ",".join(str(r) for r in rows) + '], "total": 12.5.0}'
json.loads(payload)
""",
    "asyncio_crash": """
import asyncio

async def fetch(order_id):
    await asyncio.sleep(0)
    if order_id == 4417:
        raise ConnectionResetError(f"upstream closed the connection for order {order_id}")
    return order_id

async def main():
    return await asyncio.gather(*(fetch(i) for i in range(4410, 4420)))

asyncio.run(main())
""",
}


def _last_line(text: str) -> str:
    return next((line for line in reversed(text.split("\n")) if line.strip()), "")


_EXC_LINE = re.compile(r"^\s*(?:\| )?[A-Za-z_][\w.]*(?:Error|Exception|Group|Interrupt|Exit)\b.*")
_PY_FRAME = re.compile(r'^\s*(?:\| )?File "([^"]+)", line (\d+), in (\S+)')


def gen_python_crashes(rng: random.Random, k: int) -> Iterator[Output]:
    with tempfile.TemporaryDirectory(prefix="headroom-crash-") as tmp:
        for name, source in _PY_CRASHES.items():
            script = Path(tmp) / f"{name}.py"
            script.write_text(source.lstrip())
            text = _run([sys.executable, str(script)], cwd=tmp).replace(tmp, "/home/dev/project")
            lines = text.split("\n")
            questions = [Question(f"Why did {name}.py crash?", (_last_line(text).strip(),))]
            causes = [line.strip() for line in lines if _EXC_LINE.match(line) and not line.startswith(" " * 4)]
            for cause in _pick(rng, causes[:-1], 1):
                questions.append(Question(f"What error came first, before {name}.py finally failed?", (cause,)))
            frames = [m for m in map(_PY_FRAME.match, lines) if m and "/home/dev/project" in m.group(1)]
            for frame in _pick(rng, frames, max(1, k - 2)):
                questions.append(Question(f"At which line does {frame.group(3)} fail in {name}.py?",
                                          (frame.group(0).strip(),)))
            yield Output(f"trace:python:{name}", f"python {name}.py", text, tuple(questions))


_NODE_CRASHES = {
    "recursion": "function visit(n, seen) { return visit(n + 1, seen) + 1 }\nvisit(0, new Set())\n",
    "cause": ("function load() { throw new Error('ENOENT: /srv/app/config/tenant-8812.json') }\n"
              "function start() { try { load() } catch (e) { throw new Error('service failed to start', "
              "{ cause: e }) } }\nfor (let i = 0; i < 300; i++) console.log(`[worker] warmed cache shard ${i} "
              "(${i * 37 % 101} keys)`)\nstart()\n"),
}


def gen_node_crashes(rng: random.Random, k: int) -> Iterator[Output]:
    if not shutil.which("node"):
        return
    with tempfile.TemporaryDirectory(prefix="headroom-crash-") as tmp:
        for name, source in _NODE_CRASHES.items():
            script = Path(tmp) / f"{name}.js"
            script.write_text(source)
            text = _run(["node", str(script)], cwd=tmp).replace(tmp, "/home/dev/project")
            errors = [line.strip() for line in text.split("\n") if re.match(r"^\s*(?:\[cause\]: )?\w*Error\b", line)]
            questions = [Question(f"Why did {name}.js crash?", (e,)) for e in _pick(rng, errors, k)]
            yield Output(f"trace:node:{name}", f"node {name}.js", text, tuple(questions))


_JAVA_CRASHES = {
    "Boot": """
public class Boot {
    static void load(String path) throws Exception { throw new java.io.FileNotFoundException(path); }
    static void start() {
        try { load("/srv/app/config/tenant-4471.yaml"); }
        catch (Exception e) { throw new IllegalStateException("service failed to start", e); }
    }
    public static void main(String[] args) {
        for (int i = 0; i < 300; i++)
            System.out.println("[worker] warmed cache shard " + i + " (" + (i * 37 % 101) + " keys)");
        try { start(); } catch (RuntimeException e) { throw new RuntimeException("boot aborted after 3 attempts", e); }
    }
}
""",
    "Walk": """
public class Walk {
    static int even(int n) { return odd(n + 1) + 1; }
    static int odd(int n) { return even(n + 1) + 1; }
    public static void main(String[] args) { System.out.println(even(0)); }
}
""",
}


def gen_java_crashes(rng: random.Random, k: int) -> Iterator[Output]:
    """Java programs that fail (a chain of causes after a long log; a mutual recursion's
    StackOverflowError): the final exception and every ``Caused by:`` line are the needles."""
    if not (shutil.which("javac") and shutil.which("java")):
        return
    with tempfile.TemporaryDirectory(prefix="headroom-crash-") as tmp:
        for name, source in _JAVA_CRASHES.items():
            (Path(tmp) / f"{name}.java").write_text(source.lstrip())
        _run(["javac", *(f"{name}.java" for name in _JAVA_CRASHES)], cwd=tmp)
        for name in _JAVA_CRASHES:
            text = _run(["java", "-Xss512k", "-cp", tmp, name], cwd=tmp)
            lines = text.split("\n")
            causes = [line.strip() for line in lines if line.startswith(("Exception in thread", "Caused by: "))]
            questions = [Question(f"Why did {name} crash?", (causes[0],))] if causes else []
            questions += [Question(f"What caused the failure of {name}?", (c,)) for c in _pick(rng, causes[1:], k)]
            frames = sorted({line.strip() for line in lines if line.startswith("\tat ")})
            for frame in _pick(rng, frames, 1):
                questions.append(Question(f"Which method of {name} is in the stack trace, at which line?", (frame,)))
            yield Output(f"trace:java:{name}", f"java {name}", text, tuple(questions))


_RUST_CRASH = """
fn parse(depth: u32, input: &str) -> u32 {
    if depth > 24 { let shards: Vec<u32> = vec![]; return shards[depth as usize]; }
    parse(depth + 1, input) + 1
}
fn main() {
    for i in 0..300 { println!("[worker] warmed cache shard {} ({} keys)", i, i * 37 % 101); }
    println!("{}", parse(0, "order ORD-88213"));
}
"""


def gen_rust_crashes(rng: random.Random, k: int) -> Iterator[Output]:
    """A Rust panic with ``RUST_BACKTRACE=1`` (numbered frames, a recursion): the panic line and
    its message are the needles."""
    if not shutil.which("rustc"):
        return
    with tempfile.TemporaryDirectory(prefix="headroom-crash-") as tmp:
        (Path(tmp) / "shards.rs").write_text(_RUST_CRASH.lstrip())
        _run(["rustc", "-g", "-o", "shards", "shards.rs"], cwd=tmp)
        if not (Path(tmp) / "shards").exists():
            return
        text = _run(["./shards"], cwd=tmp, env={**os.environ, "RUST_BACKTRACE": "1"}).replace(tmp, "/home/dev/shards")
        lines = text.split("\n")
        panic = next((i for i, line in enumerate(lines) if " panicked at " in line), None)
        if panic is None or panic + 1 >= len(lines):
            return
        questions = [Question("Why did shards panic?", (lines[panic + 1].strip(),)),
                     Question("Where did shards panic?", (lines[panic].split(" panicked at ")[1].strip(),))]
        yield Output("trace:rust:shards", "RUST_BACKTRACE=1 ./shards", text, tuple(questions[:max(1, k)]))


_GO_CRASH = """
package main

import (
	"fmt"
	"sync"
	"time"
)

type Shard struct {
	ID   int
	Keys []string
}

func worker(jobs <-chan int, wg *sync.WaitGroup) {
	defer wg.Done()
	for range jobs {
	}
}

func lookup(shards []Shard, id int) string {
	return shards[id].Keys[0]
}

func main() {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go worker(jobs, &wg)
	}
	for i := 0; i < 300; i++ {
		fmt.Printf("[worker] warmed cache shard %d (%d keys)\\n", i, i*37%101)
	}
	time.Sleep(50 * time.Millisecond)
	shards := make([]Shard, 12)
	fmt.Println(lookup(shards, 7))
}
"""


def gen_go_crashes(rng: random.Random, k: int) -> Iterator[Output]:
    """A Go panic with ``GOTRACEBACK=all``: the goroutine that panicked and forty workers parked
    on a channel. The panic line, the failing function and the workers' state are the needles."""
    if not shutil.which("go"):
        return
    with tempfile.TemporaryDirectory(prefix="headroom-crash-") as tmp:
        (Path(tmp) / "main.go").write_text(_GO_CRASH.lstrip())
        env = {"GOCACHE": f"{tmp}/cache", "GOPATH": f"{tmp}/gopath", "GO111MODULE": "off"}
        _run(["go", "build", "-o", "shards", "main.go"], cwd=tmp, env=env)
        if not (Path(tmp) / "shards").exists():
            return
        text = _run(["./shards"], cwd=tmp, env={"GOTRACEBACK": "all"}).replace(tmp, "/home/dev/shards")
    lines = text.split("\n")
    panic = next((line for line in lines if line.startswith("panic: ")), None)
    heads = [i for i, line in enumerate(lines) if line.startswith("goroutine ")]
    if panic is None or len(heads) < 2:
        return
    questions = [Question("Why did shards panic?", (panic,)),
                 Question("In which function did shards panic?", (lines[heads[0] + 1],)),
                 Question("What are the worker goroutines of shards doing?", (lines[heads[1]],))]
    yield Output("trace:go:shards", "GOTRACEBACK=all ./shards", text, tuple(questions[:max(1, k)]))


# --- prose: man pages --------------------------------------------------------------------------

_OPTION = re.compile(r"^\s{4,}(--?[a-zA-Z][\w-]*)")


def gen_man(rng: random.Random, k: int, pages: tuple[str, ...] = ("find", "git-log", "ls", "tar", "bash")) \
        -> Iterator[Output]:
    if not shutil.which("man"):
        return
    for page in pages:
        text = _run(["man", "-P", "cat", page])
        if len(text) < 2_000:
            continue
        lines = text.split("\n")
        options = [(i, m.group(1)) for i, m in ((i, _OPTION.match(line)) for i, line in enumerate(lines)) if m]
        options = [(i, opt) for i, opt in options if sum(1 for _, o in options if o == opt) == 1]
        questions = []
        for i, opt in _pick(rng, options, max(1, k // 2)):
            questions.append(Question(f"What does the {opt} option of {page} do?", (lines[i].strip(),)))
        prose = [line.strip() for line in lines if len(line.strip()) > 50 and not line.strip().startswith("-")]
        for line in _pick(rng, prose, k - len(questions)):
            words = sorted({w for w in _WORD.findall(line) if len(w) >= 6}, key=lambda w: (text.count(w), w))[:2]
            if len(words) == 2:
                questions.append(Question(f"What does the {page} manual say about {words[0]} and {words[1]}?",
                                          (line,)))
        yield Output(f"prose:man:{page}", f"man {page}", text, tuple(questions))


# --- prose: package documentation fetched as a web page --------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def gen_docs(rng: random.Random, k: int, pages: int = 4) -> Iterator[Output]:
    """Installed packages' long descriptions (their PyPI pages' text: Markdown or reST) as a
    fetch tool returns them; questions about sentences, named by their two rarest long words."""
    from importlib import metadata

    docs = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        text = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        if 8_000 <= len(text) <= MAX_CHARS and name and not name.startswith("headroom"):
            docs[name.lower()] = text
    for name in _pick(rng, sorted(docs), pages):
        text = docs[name]
        sentences = [s for line in text.split("\n") if len(line) > 50 and line[:1].isalpha()
                     for s in _SENTENCE.split(line.strip()) if 40 <= len(s) <= 300]
        questions = []
        for sentence in _pick(rng, [s for s in sentences if text.count(s) == 1], k):
            words = sorted({w for w in _WORD.findall(sentence) if len(w) >= 6}, key=lambda w: (text.count(w), w))[:2]
            if len(words) == 2:
                questions.append(Question(f"What does the {name} documentation say about {words[0]} and "
                                          f"{words[1]}?", (sentence,)))
        yield Output(f"prose:docs:{name}", f"https://pypi.org/project/{name}/", text, tuple(questions), "WebFetch")


# --- JSON: package metadata, sysconfig, package.json --------------------------------------------


def _leaves(value, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path, value


def _json_questions(rng: random.Random, doc, text: str, k: int, what: str) -> tuple[Question, ...]:
    """Questions about string leaves whose value occurs once in the document, naming the
    leaf's key, its parent key and the name of the list item it sits in (if any)."""
    candidates = []
    for path, value in _leaves(doc):
        if not isinstance(value, str) or not 8 <= len(value) <= 200 or not isinstance(path[-1], str):
            continue
        needle = json.dumps(value, ensure_ascii=False)[1:-1][:60]
        if text.count(needle) != 1:
            continue
        candidates.append((path, needle))
    questions = []
    for path, needle in _pick(rng, candidates, k):
        keys = [p for p in path if isinstance(p, str)]
        owner = ""
        node = doc
        for step in path[:-1]:
            node = node[step]
            if isinstance(node, dict):
                for name_key in ("name", "id", "key"):
                    if isinstance(node.get(name_key), str) and node is not doc:
                        owner = node[name_key]
        label = ".".join(keys[-2:])
        about = f" of {owner}" if owner else ""
        questions.append(Question(f"What is {label}{about} in the {what}?", (needle,)))
    return tuple(questions)


def gen_json(rng: random.Random, k: int) -> Iterator[Output]:
    command = "python -c 'import sysconfig, json; print(json.dumps(sysconfig.get_config_vars(), indent=2))'"
    text = _run([sys.executable, "-c", "import sysconfig, json; print(json.dumps(sysconfig.get_config_vars(), "
                 "indent=2, default=str))"])
    yield Output("json:sysconfig", command, text, _json_questions(rng, json.loads(text), text, k, "sysconfig"))
    text = _run([sys.executable, "-m", "pip", "inspect", "--local"], limit=None)
    if text.lstrip().startswith("{"):
        # 30 of the packages (the whole inventory is megabytes, and would outweigh every other kind)
        doc = json.loads(text[text.index("{"):])
        doc["installed"] = sorted(_pick(rng, doc.get("installed") or [], 30), key=lambda d: d["metadata"]["name"])
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        yield Output("json:pip_inspect", "pip inspect --local | jq '.installed |= (30 of them)'", text,
                     _json_questions(rng, doc, text, k, "inventory"))
    if shutil.which("node"):
        npm = Path(_run(["npm", "root", "-g"]).strip() or "/usr/lib/node_modules") / "npm"
        manifests = sorted(npm.glob("node_modules/*/package.json"))
        for manifest in _pick(rng, manifests, 1) + [npm / "package.json"]:
            script = f"console.log(JSON.stringify(require({json.dumps(str(manifest))}), null, 2))"
            text = _run(["node", "-e", script])
            if text.startswith("{") and len(text) > 1_500:
                yield Output("json:package_json", f"node -e '{script}'", text,
                             _json_questions(rng, json.loads(text), text, k, "package manifest"))


# --- diffs and logs ----------------------------------------------------------------------------


def gen_diff(rng: random.Random, k: int) -> Iterator[Output]:
    count = int(_run(["git", "rev-list", "--count", "HEAD"]).strip() or 0)
    if count < 12:
        return
    for back in (3, 10):
        command = f"git diff HEAD~{back} HEAD"
        text = _run(["git", "diff", f"HEAD~{back}", "HEAD"])
        lines = text.split("\n")
        questions = []
        current = ""
        added: list[tuple[str, str]] = []
        for line in lines:
            if line.startswith("+++ b/"):
                current = line[6:]
            elif line.startswith("+") and not line.startswith("+++") and len(line.strip()) > 30:
                added.append((current, line))
        for path, line in _pick(rng, [a for a in added if _unique(lines, a[1])], k):
            words = sorted({w for w in _WORD.findall(line) if len(w) >= 6}, key=lambda w: (text.count(w), w))[:1]
            if words:
                questions.append(Question(f"What changed in {path} about {words[0]}?", (line,)))
        yield Output("diff:git", command, text, tuple(questions))


_PYTEST_FILE = """
import pytest

@pytest.mark.parametrize("n", range(240))
def test_invoice_total(n):
    total = sum(range(n)) * 3
    assert total % 97 != 11 or n < 10, f"invoice {n} total {total} rejected by the ledger"

def test_refund_rounding():
    assert round(2.675, 2) == 2.68
"""


def gen_logs(rng: random.Random, k: int) -> Iterator[Output]:
    dpkg = Path("/var/log/dpkg.log")
    if dpkg.is_file():
        text = _run(["tail", "-n", "600", str(dpkg)])
        rows = [r for r in _rows(text) if " status installed " in r]
        qs = _row_questions(rng, rows, lambda r: r.split()[-2] if len(r.split()) >= 5 else None,
                            "When was {name} installed?", k)
        yield Output("log:dpkg", "tail -n 600 /var/log/dpkg.log", text, qs)
    with tempfile.TemporaryDirectory(prefix="headroom-pytest-") as tmp:
        (Path(tmp) / "test_ledger.py").write_text(_PYTEST_FILE.lstrip())
        text = _run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:randomly",
                     "test_ledger.py"], cwd=tmp).replace(tmp, "/home/dev/ledger")
        failed = re.findall(r"^E\s+AssertionError: (invoice \d+ total \d+ rejected by the ledger)", text, re.M)
        questions = [Question(f"Why did test_invoice_total[{m.split()[1]}] fail?", (m,)) for m in _pick(rng, failed, k)]
        rounding = [line.strip() for line in text.split("\n") if line.startswith("E ") and "2.67" in line]
        questions += [Question("Why does test_refund_rounding fail?", (rounding[0],))] if rounding else []
        yield Output("log:pytest", "python -m pytest -v test_ledger.py", text, tuple(questions))


GENERATORS: dict[str, Callable[[random.Random, int], Iterator[Output]]] = {
    "ps": gen_ps, "ls": gen_ls, "du": gen_du, "wc": gen_wc, "find": gen_find, "getconf": gen_getconf,
    "csv": gen_csv, "git_log": gen_git_log, "stanzas": gen_stanzas, "python": gen_python_crashes,
    "node": gen_node_crashes, "java": gen_java_crashes, "rust": gen_rust_crashes, "go": gen_go_crashes,
    "ini": gen_ini, "apt_policy": gen_apt_policy, "man": gen_man,
    "docs": gen_docs, "json": gen_json, "diff": gen_diff, "logs": gen_logs,
}
#: Cheap generators (a few seconds in all) for the test suite's bounded sample.
SAMPLE = ("ps", "ls", "du", "find", "git_log", "python", "json", "logs")


def generate(seed: int, questions_per_output: int = 4, only: tuple[str, ...] | None = None) -> list[Output]:
    """Every output of the chosen generators with its seeded questions (outputs without
    questions, or too small for any compression to apply, are dropped)."""
    outputs = []
    for name, gen in GENERATORS.items():
        if only is not None and name not in only:
            continue
        rng = random.Random(f"{seed}:{name}")
        for output in gen(rng, questions_per_output):
            if output.questions and len(output.content) >= 1_500:
                outputs.append(output)
    return outputs


# --- the judge ---------------------------------------------------------------------------------


@dataclass
class Trial:
    """One question about one output, through the pipeline."""

    output: Output
    question: Question
    compressed: str
    tokens_before: int
    tokens_after: int
    in_context: int  # needles found in the compressed text
    retrievable: int  # needles not in it but in the original stored behind its marker
    transforms: tuple[str, ...] = ()

    @property
    def lost(self) -> int:
        return len(self.question.needles) - self.in_context - self.retrievable


@dataclass
class KindReport:
    kind: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def before(self) -> int:
        return sum(t.tokens_before for t in self.trials)

    @property
    def after(self) -> int:
        return sum(t.tokens_after for t in self.trials)

    @property
    def needles(self) -> int:
        return sum(len(t.question.needles) for t in self.trials)

    @property
    def in_context(self) -> int:
        return sum(t.in_context for t in self.trials)

    @property
    def reachable(self) -> int:
        return sum(t.in_context + t.retrievable for t in self.trials)

    @property
    def saved(self) -> float:
        return 1 - self.after / self.before if self.before else 0.0


async def judge(outputs: list[Output]) -> list[Trial]:
    """Run every question through the pipeline with default options and a fresh store."""
    from headroom.state.memory_store import MemoryStore
    from headroom.transforms import ccr
    from headroom.transforms.pipeline import run_pipeline
    from headroom.transforms.tokens import count_tokens
    from testkit.corpus.cases import Case, body_for, tool_output

    trials = []
    for output in outputs:
        before = count_tokens(output.content)
        for question in output.questions:
            tool_input = {"command": output.command} if output.tool == "Bash" else {"url": output.command}
            case = Case(name=output.kind, tool=output.tool, tool_input=tool_input,
                        content=output.content, question=question.text, answers=question.needles)
            new_body, receipt = await run_pipeline(body_for(case), "anthropic", MemoryStore(), "realworld")
            text = tool_output(new_body, "anthropic") if new_body is not None else output.content
            marker = any(key in ccr.marker_keys(text) for key in receipt.ccr_keys)
            if question.same_line:
                together = any(all(n in line for n in question.needles) for line in text.split("\n"))
                inside = len(question.needles) if together else 0
            else:
                inside = sum(1 for n in question.needles if n in text)
            behind = len(question.needles) - inside if marker and all(n in output.content for n in question.needles) \
                else 0
            trials.append(Trial(output, question, text, before, count_tokens(text), inside, behind,
                                tuple(receipt.transforms)))
    return trials


def by_kind(trials: list[Trial], depth: int = 2) -> list[KindReport]:
    """Trials grouped by the first ``depth`` parts of their kind (``trace:python``)."""
    groups: dict[str, KindReport] = {}
    for trial in trials:
        kind = ":".join(trial.output.kind.split(":")[:depth])
        groups.setdefault(kind, KindReport(kind)).trials.append(trial)
    return [groups[k] for k in sorted(groups)]


def table(trials: list[Trial], seed: int, worst: int = 8) -> str:
    """The per-kind table (Markdown), the total, and the worst cases."""
    rows = [f"seed {seed}", "",
            "| kind | outputs | questions | tokens before → after | saved | needles in context "
            "| in context or retrievable |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    groups = by_kind(trials)
    total = KindReport("**total**", trials)
    for report in [*groups, total]:
        outputs = len({id(t.output) for t in report.trials})
        rows.append(f"| {report.kind} | {outputs} | {len(report.trials)} | {report.before:,} → {report.after:,} | "
                    f"{report.saved:.1%} | {report.in_context}/{report.needles} "
                    f"| {report.reachable}/{report.needles} |")
    missed = sorted((t for t in trials if t.in_context < len(t.question.needles)), key=lambda t: -t.lost)
    if missed:
        rows += ["", "needles not in context:"]
        rows += [f"- {t.output.kind}: {t.question.text!r} → {t.question.needles[0][:70]!r}"
                 f"{' (LOST)' if t.lost else ' (retrievable)'}" for t in missed[:worst]]
    low = sorted(by_output(trials), key=lambda o: o[1])[:worst]
    rows += ["", "least saved:"]
    rows += [f"- {kind}: {saved:.1%} of {before:,} tokens ({command[:60]})" for kind, saved, before, command in low]
    return "\n".join(rows)


def by_output(trials: list[Trial]) -> list[tuple[str, float, int, str]]:
    """(kind, share saved, tokens before, command) per output, over its questions."""
    seen: dict[int, list[Trial]] = {}
    for trial in trials:
        seen.setdefault(id(trial.output), []).append(trial)
    out = []
    for group in seen.values():
        before = sum(t.tokens_before for t in group)
        after = sum(t.tokens_after for t in group)
        out.append((group[0].output.kind, 1 - after / before, group[0].tokens_before, group[0].output.command))
    return out
