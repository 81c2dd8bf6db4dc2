"""The request log: whole lines from every worker, the agreed fields, and no secrets."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat

from headroom.observability.request_log import FIELDS, RequestLog, record_of
from tests.observability import workers
from tests.observability.workers import outcome

API_KEY = "sk-ant-api03-DO-NOT-LOG-ME-0123456789abcdef"


def lines_of(path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_record_has_exactly_the_agreed_fields():
    record = record_of(outcome(messages=[{"role": "user", "content": "hi"}]))
    assert tuple(record) == FIELDS
    assert record["tokens_saved"] == 400
    assert record["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert record["api_key_hash"] == "c0ffee" * 4
    assert record_of(outcome(messages=[{"role": "user", "content": "hi"}]), log_messages=True)["messages"] == [
        {"role": "user", "content": "hi"}
    ]


def test_non_finite_figures_become_null_rather_than_invalid_json(tmp_path):
    log = RequestLog(str(tmp_path / "requests.jsonl"))
    log.write(outcome(latency_ms=float("nan"), cost_usd=float("inf")))
    [line] = lines_of(tmp_path / "requests.jsonl")
    assert line["latency_ms"] is None and line["cost_usd"] is None


def test_key_and_content_stay_out_unless_messages_are_asked_for(tmp_path):
    leaky = outcome(messages=[{"role": "user", "content": f"my key is {API_KEY}"}])
    quiet = tmp_path / "quiet.jsonl"
    RequestLog(str(quiet)).write(leaky)
    assert API_KEY not in quiet.read_text()
    assert "messages" not in lines_of(quiet)[0]

    # The same outcome with --log-messages does carry the content: the check above can fail.
    loud = tmp_path / "loud.jsonl"
    RequestLog(str(loud), log_messages=True).write(leaky)
    assert API_KEY in loud.read_text()


def test_file_is_created_lazily_and_private(tmp_path):
    path = tmp_path / "requests.jsonl"
    log = RequestLog(str(path))
    assert not path.exists()
    log.write(outcome())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    log.close()


def write_concurrently(spawn, path, per_worker: int, message_bytes: int) -> None:
    go = multiprocessing.get_context("spawn").Event()
    processes = [spawn(workers.write_lines, str(path), per_worker, n, message_bytes, go) for n in range(3)]
    go.set()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0


def test_workers_writing_at_once_never_interleave(tmp_path, spawn):
    path = tmp_path / "requests.jsonl"
    per_worker, message_bytes = 500, 9000  # lines well over PIPE_BUF and a page
    write_concurrently(spawn, path, per_worker, message_bytes)

    records = lines_of(path)
    assert len(records) == 3 * per_worker
    assert len({r["request_id"] for r in records}) == 3 * per_worker
    assert all(len(r["messages"][0]["content"]) == message_bytes for r in records)


def test_disk_errors_are_counted_and_warned_about_once(tmp_path, caplog):
    log = RequestLog(str(tmp_path / "missing-dir" / "requests.jsonl"))
    with caplog.at_level(logging.WARNING, logger="headroom.observability"):
        log.write(outcome())
        log.write(outcome())
    assert log.failures == 2
    assert len(caplog.records) == 1

    (tmp_path / "missing-dir").mkdir()  # the path comes back: writing resumes
    log.write(outcome())
    assert len(lines_of(tmp_path / "missing-dir" / "requests.jsonl")) == 1


def test_a_rotated_file_is_reopened(tmp_path):
    path = tmp_path / "requests.jsonl"
    log = RequestLog(str(path), reopen_check_s=0)
    log.write(outcome(1))
    path.rename(tmp_path / "requests.jsonl.1")
    log.write(outcome(2))
    assert [r["request_id"] for r in lines_of(path)] == ["req-2"]
    assert [r["request_id"] for r in lines_of(tmp_path / "requests.jsonl.1")] == ["req-1"]
    log.close()


def test_check_reports_an_unwritable_path_up_front(tmp_path):
    try:
        RequestLog(str(tmp_path / "nope" / "requests.jsonl")).check()
    except OSError:
        pass
    else:
        raise AssertionError("check() accepted a path in a missing directory")
