"""A full disk: the request log keeps whole lines only, and metrics never take a worker down.

"Full" is made real without faking a system call: ``RLIMIT_FSIZE`` caps the size of any
file a process writes, and a write that crosses the cap lands only in part (a short write),
then fails with ``EFBIG`` (Python ignores ``SIGXFSZ``), exactly as a write on a full disk
lands in part and then fails with ``ENOSPC``. Lifting the cap is the space coming back.
The metrics test fills a real tmpfs (needs root to mount; skipped otherwise).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from headroom.observability.request_log import RequestLog, encode, record_of
from testkit.waiting import wait_for
from tests.observability.workers import outcome

ANTHROPIC = {"x-api-key": "sk-ant-disk-full", "anthropic-version": "2023-06-01"}
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
HTTP = httpx.Client(timeout=10.0)


def whole_lines(path: Path) -> list[dict]:
    """Every line of the file, parsed: fails on a partial or merged record. A dropped line
    is left as spaces, which the next line follows (or the file ends in)."""
    text = path.read_bytes().decode("ascii")
    assert text.rstrip(" ") == "" or text.rstrip(" ").endswith("\n"), text[-200:]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _cap_then_lift(path: str, before: int, during: int, after: int, result) -> None:
    """In a child process: write ``before`` lines, cap the file size 2½ lines further, write
    ``during`` lines, lift the cap, write ``after`` lines; report the lines lost."""
    log = RequestLog(path)
    for n in range(before):
        log.write(outcome(n))
    line = len(encode(record_of(outcome(0))))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + line * 5 // 2, hard))
    for n in range(before, before + during):
        log.write(outcome(n))
    lost = log.failures
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    for n in range(before + during, before + during + after):
        log.write(outcome(n))
    result.put((lost, log.failures))


def test_a_short_write_drops_the_line_whole_and_writing_resumes(tmp_path):
    path = tmp_path / "requests.jsonl"
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    child = context.Process(target=_cap_then_lift, args=(str(path), 3, 6, 4, result))
    child.start()
    lost_while_capped, lost = result.get(timeout=60)
    child.join(30)
    assert child.exitcode == 0
    records = whole_lines(path)
    # 2 of the 6 capped lines fit; the 3rd landed in part and was taken back; the rest failed.
    assert (lost_while_capped, lost) == (4, 4)
    assert [r["request_id"] for r in records] == [f"req-{n}" for n in (0, 1, 2, 3, 4, 9, 10, 11, 12)]


# -- a real proxy -------------------------------------------------------------------------------


def lines_lost(proxy) -> float:
    text = HTTP.get(f"{proxy.url}/metrics").text
    return sum(float(v) for v in re.findall(r"^headroom_request_log_lines_lost_total (\S+)$", text, re.M))


def set_file_limit(proxy, limit: int) -> None:
    """``RLIMIT_FSIZE`` (soft) for the proxy and every process under it, while they run."""
    root = psutil.Process(proxy.proc.pid)
    for process in [root, *root.children(recursive=True)]:
        _, hard = process.rlimit(psutil.RLIMIT_FSIZE)
        process.rlimit(psutil.RLIMIT_FSIZE, (limit, hard))


def send(proxy, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        request_id = f"req-{uuid.uuid4().hex[:12]}"
        answer = HTTP.post(f"{proxy.url}/v1/messages", json=BODY, headers={**ANTHROPIC, "x-request-id": request_id})
        assert answer.status_code == 200, answer.text  # a log that cannot be written never fails a request
        ids.append(answer.headers["x-request-id"])
    return ids


def test_a_proxy_whose_log_fills_up_writes_whole_lines_and_resumes(start_proxy, tmp_path):
    path = tmp_path / "requests.jsonl"
    # Earlier lines, so that the cap sits above every other file the proxy writes (its
    # output, its metric files): only the request log runs into it.
    path.write_bytes(b"".join(encode(record_of(outcome(n))) for n in range(3000)))
    earlier = len(whole_lines(path))
    proxy = start_proxy("--log-file", str(path))
    first = send(proxy, 2)
    wait_for(lambda: len(whole_lines(path)) == earlier + 2, what="the first lines")
    line = max(len(json.dumps(r)) for r in whole_lines(path)[-2:])

    limit = path.stat().st_size + line * 5 // 2
    set_file_limit(proxy, limit)
    capped = send(proxy, 8)
    wait_for(lambda: lines_lost(proxy) >= 6, what="the lines that could not be written counted")
    records = whole_lines(path)
    assert path.stat().st_size <= limit
    assert [r["request_id"] for r in records[earlier:]] == first + capped[:2]
    assert lines_lost(proxy) == 6

    set_file_limit(proxy, resource.RLIM_INFINITY)  # the space comes back
    after = send(proxy, 3)
    wait_for(lambda: len(whole_lines(path)) == earlier + 7, what="writing resumed")
    assert [r["request_id"] for r in whole_lines(path)[earlier:]] == first + capped[:2] + after
    assert "writing again" in proxy.output()


# -- the metrics directory on a full disk ------------------------------------------------------------


@pytest.fixture
def full_tmpfs(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mount / "metrics").mkdir()
        fd = os.open(mount / "fill", os.O_WRONLY | os.O_CREAT)
        try:
            for _ in range(1024):  # 4 MiB at most: twice the file system
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        assert os.statvfs(mount).f_bavail == 0
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


OBSERVE = """
from headroom.observability import metrics
from tests.observability.workers import outcome
for n in range(200):
    metrics.observe(outcome(n, model=f"model-{n % 60}", status=200 + n % 3))
print("served", metrics.get_metrics().registry is not None)
"""


def test_a_full_metrics_directory_leaves_the_process_serving(full_tmpfs):
    """Without its files reserved, the first value written into prometheus-client's mapped
    file on a full tmpfs is a SIGBUS (exit -7); with them, the process counts in memory."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(full_tmpfs / "metrics")}
    done = subprocess.run([sys.executable, "-c", OBSERVE], capture_output=True, env=env, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"served True" in done.stdout
    assert b"no room for this process's files" in done.stderr
    assert list((full_tmpfs / "metrics").iterdir()) == []  # nothing half-made left behind

    os.remove(full_tmpfs / "fill")  # room again: the next process has its files, reserved
    done = subprocess.run([sys.executable, "-c", OBSERVE], capture_output=True, env=env, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and b"no room" not in done.stderr, done.stderr.decode()[-2000:]
    files = sorted(p.name.split("_")[0] for p in (full_tmpfs / "metrics").iterdir())
    assert files == ["counter", "gauge", "histogram"]
