"""``headroom doctor`` as a user runs it (a real subprocess), on a healthy setup and on broken
ones: each problem reported with its fix, exit 0 only when nothing is wrong."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from testkit import ROOT
from testkit.ports import free_port

TIKTOKEN_DIR = os.environ.get("TIKTOKEN_CACHE_DIR", str(ROOT / ".tiktoken"))


def doctor(*flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "TIKTOKEN_CACHE_DIR": TIKTOKEN_DIR,
            "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "headroom", "doctor", *flags], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def line(run: subprocess.CompletedProcess, subject: str) -> str:
    """The finding about ``subject``, with its fix line when it has one."""
    lines = run.stdout.splitlines()
    for index, text in enumerate(lines):
        if text[6:].startswith(subject):
            fix = lines[index + 1] if index + 1 < len(lines) and lines[index + 1].startswith("      fix: ") else ""
            return f"{text}\n{fix}".strip()
    raise AssertionError(f"no finding about {subject!r} in:\n{run.stdout}")


@pytest.fixture(scope="module")
def have_encodings():
    if not os.path.isdir(TIKTOKEN_DIR):
        pytest.skip("tiktoken's encodings are not built here (scripts/test.sh builds them into .tiktoken)")


def test_a_healthy_setup_exits_0(have_encodings, redis_server, tmp_path):
    run = doctor("--port", str(free_port()), "--redis-url", redis_server.url, "--log-file", str(tmp_path / "r.log"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert line(run, "tiktoken o200k_base").startswith("OK    tiktoken o200k_base: present")
    assert "free" in line(run, "port 127.0.0.1:")
    redis = line(run, "redis redis://127.0.0.1")
    assert redis.startswith("OK") and "reachable, Redis " in redis
    assert line(run, "log file").startswith("OK")
    assert "FAIL" not in run.stdout and run.stderr.strip() == "no problems found"


def test_missing_encodings_give_the_exact_cache_remedy(tmp_path):
    run = doctor("--port", str(free_port()), env={"TIKTOKEN_CACHE_DIR": str(tmp_path)})
    assert run.returncode == 1
    finding = line(run, "tiktoken o200k_base")
    assert finding.startswith("FAIL") and "token counts would be estimates" in finding
    assert f"export TIKTOKEN_CACHE_DIR=<that folder> (now: {tmp_path})" in finding
    assert run.stderr.strip() == "1 problem found"


def test_the_port_held_by_something_else_fails_and_by_a_headroom_is_fine(have_encodings, start_proxy):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = doctor("--port", str(port))
    assert run.returncode == 1
    finding = line(run, f"port 127.0.0.1:{port}")
    assert finding.startswith("FAIL") and "held by something that does not answer HTTP" in finding
    assert "fix: stop that program, or choose another --port" in finding

    proxy = start_proxy("--no-cache")
    port = int(proxy.url.rsplit(":", 1)[1])
    run = doctor("--port", str(port))
    assert run.returncode == 0, run.stdout
    assert "held by a running Headroom" in line(run, f"port 127.0.0.1:{port}")


def test_unreachable_redis_is_reported_without_its_password(have_encodings):
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    run = doctor("--port", str(free_port()), "--redis-url", url, "--fail-closed")
    assert run.returncode == 1
    finding = line(run, "redis redis://")
    assert finding.startswith("FAIL") and "unreachable" in finding and "rejected with 503 (--fail-closed)" in finding
    assert "hunter2-secret" not in run.stdout + run.stderr


def test_workers_without_redis_server_on_path(have_encodings, tmp_path):
    run = doctor("--port", str(free_port()), "--workers", "2", env={"PATH": str(tmp_path)})
    assert run.returncode == 1
    finding = line(run, "redis-server")
    assert finding.startswith("FAIL  redis-server: not on PATH") and "or pass --redis-url" in finding


def test_beyond_loopback_needs_an_admin_token_from_flag_or_environment(have_encodings):
    port = str(free_port())
    run = doctor("--host", "0.0.0.0", "--port", port)
    assert run.returncode == 1 and line(run, "admin token").startswith("FAIL  admin token: none while listening")
    run = doctor("--host", "0.0.0.0", "--port", port, env={"HEADROOM_ADMIN_TOKEN": "doctor-admin-token"})
    assert run.returncode == 0, run.stdout
    assert "doctor-admin-token" not in run.stdout


def test_unwritable_log_file_and_silent_model_server(have_encodings, tmp_path):
    run = doctor("--port", str(free_port()), "--log-file", str(tmp_path / "missing" / "requests.log"),
                 "--llmlingua", "--model-server-url", f"tcp://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    assert line(run, "log file").startswith("FAIL") and "No such file or directory" in line(run, "log file")
    assert "does not answer" in line(run, "model server tcp://")
    assert run.stderr.strip() == "2 problems found"


def test_llmlingua_model_folder_without_a_model(have_encodings, tmp_path):
    from testkit.lingua import require_llmlingua

    require_llmlingua()
    run = doctor("--port", str(free_port()), "--llmlingua", "--llmlingua-model", str(tmp_path))
    assert run.returncode == 1
    assert line(run, "LLMLingua") == (f"FAIL  LLMLingua: model folder {tmp_path} has no config.json\n      fix: pass "
                                      "--llmlingua-model a folder saved with save_pretrained, or a hub name")


def test_a_bad_setting_is_one_line_and_exit_2():
    run = doctor("--port", "eighty")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("headroom doctor: error: argument --port:")
