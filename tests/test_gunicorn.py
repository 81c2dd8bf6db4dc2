"""The spec's production line, exactly:

    gunicorn headroom.proxy.server:app --workers 4 --bind 0.0.0.0:8787 \\
        --worker-class uvicorn.workers.UvicornWorker

(bound to 127.0.0.1 and a free port here), configured by ``HEADROOM_*`` variables, sharing
state through Redis, driven by both SDKs; and the refusal to run several workers without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.ports import free_port
from testkit.services import Proxy, stop, wait_until_ready
from testkit.waiting import wait_for

pytest.importorskip("gunicorn")
GUNICORN = [sys.executable, "-m", "gunicorn"]


def _gunicorn(port: int, env: dict[str, str], log: Path, workers: str = "4") -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HEADROOM_", "PROMETHEUS_"))}
    with open(log, "w") as out:
        return subprocess.Popen(
            [*GUNICORN, "headroom.proxy.server:app", "--workers", workers, "--bind", f"127.0.0.1:{port}",
             "--worker-class", "uvicorn.workers.UvicornWorker"],
            stdout=out, stderr=subprocess.STDOUT, env={**clean, **env}, cwd=log.parent,
        )


@pytest.fixture
def gunicorn_proxy(mock, redis_server, tmp_path):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {"ANTHROPIC_TARGET_API_URL": mock.url, "OPENAI_TARGET_API_URL": mock.url,
           "HEADROOM_REDIS_URL": redis_server.url.replace("/0", "/5"), "HEADROOM_RPM": "30"}
    proc = _gunicorn(port, env, log)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/health", proc, log, timeout=60)
        yield Proxy(f"http://127.0.0.1:{port}", proc, log)
    finally:
        stop(proc)


def _requests_total(url: str) -> float:
    body = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(body) if family.name == "headroom_requests"
               for sample in family.samples if sample.name == "headroom_requests_total")


def test_the_spec_gunicorn_line_serves_both_sdks_with_shared_state_and_metrics(gunicorn_proxy, fresh_mock):
    url = gunicorn_proxy.url
    claude = anthropic.Anthropic(base_url=url, api_key="sk-ant-gunicorn", max_retries=0)
    with claude.messages.stream(model="claude-opus-4-5", max_tokens=16,
                                messages=[{"role": "user", "content": "via gunicorn"}]) as stream:
        assert "".join(stream.text_stream).startswith("mock reply: via gunicorn")
    gpt = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-gunicorn", max_retries=0)
    answer = gpt.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello gunicorn"}])
    assert answer.choices[0].message.content.startswith("mock reply: hello gunicorn")
    assert answer.usage.prompt_tokens > 0

    # Every request on a new connection: gunicorn's workers share them out. The limit (30 per
    # minute per key) holds across all four only because they share one Redis.
    replies = []
    began = time.monotonic()
    for i in range(34):
        with httpx.Client(timeout=10) as fresh:
            replies.append(fresh.post(f"{url}/v1/chat/completions", headers={"authorization": "Bearer sk-limited"},
                                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"n{i}"}]}))
    statuses = [reply.status_code for reply in replies]
    refilled = (time.monotonic() - began) / 2  # the bucket refills at 30 per minute meanwhile
    assert 30 <= statuses.count(200) <= 30 + refilled and statuses.count(429) == 34 - statuses.count(200) > 0
    # OpenAI's own shape on every refusal (the last reply may be a 200: a token refilled meanwhile)
    assert {r.json()["error"]["type"] for r in replies if r.status_code == 429} == {"rate_limit_error"}

    # /metrics answered by any one worker counts the requests of all of them.
    assert _requests_total(url) == 2 + 34
    workers = {line.split("pid: ")[1].rstrip(")") for line in gunicorn_proxy.output().splitlines()
               if "Booting worker with pid" in line}
    assert len(workers) == 4


def test_several_gunicorn_workers_without_redis_refuse_to_start(mock, tmp_path):
    log = tmp_path / "gunicorn.log"
    proc = _gunicorn(free_port(), {"ANTHROPIC_TARGET_API_URL": mock.url}, log)
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        stop(proc)
    assert "4 gunicorn workers need shared state: set HEADROOM_REDIS_URL" in log.read_text()


def test_the_proxy_extra_installs_what_the_production_line_needs(tmp_path):
    """``pip install 'headroom-ai[proxy]'`` in a fresh virtual environment gives gunicorn,
    uvicorn's worker class and the app (installed from this checkout)."""
    root = Path(__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              f"{root}[proxy]"], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run(
        [python, "-c", "import gunicorn, uvicorn.workers, httptools, uvloop; "
                       "from headroom.proxy.asgi import create_asgi_app; print('ok')"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert check.stdout.strip() == "ok", check.stderr[-3000:]
    assert shutil.which("headroom", path=str(venv / "bin")) and shutil.which("gunicorn", path=str(venv / "bin"))


def test_gunicorn_workers_compress_prose_through_a_standalone_model_server(mock, fresh_mock, redis_server, tmp_path,
                                                                          lingua_model):
    """LLMLingua under gunicorn: the workers use a running ``headroom model-server``, named by
    HEADROOM_MODEL_SERVER_URL (they never start one themselves)."""
    from tests.test_llmlingua_proxy import ANTHROPIC, conversation, prose, sent_page

    model_port, port = free_port(), free_port()
    server_log = tmp_path / "model-server.log"
    with open(server_log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "headroom", "model-server", "--host", "127.0.0.1", "--port",
                                   str(model_port), "--token", "tok", "--llmlingua-model", str(lingua_model)],
                                  stdout=out, stderr=subprocess.STDOUT)
    log = tmp_path / "gunicorn.log"
    env = {"ANTHROPIC_TARGET_API_URL": mock.url, "OPENAI_TARGET_API_URL": mock.url, "HEADROOM_CACHE": "false",
           "HEADROOM_REDIS_URL": redis_server.url.replace("/0", "/6"), "HEADROOM_LLMLINGUA": "true",
           "HEADROOM_MODEL_SERVER_URL": f"tcp://127.0.0.1:{model_port}", "HEADROOM_MODEL_SERVER_TOKEN": "tok"}
    proc = _gunicorn(port, env, log, workers="2")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/health", proc, log, timeout=60)
        try:
            wait_for(lambda: httpx.get(f"{url}/health", timeout=5).json().get("llmlingua") == "ready", timeout=90,
                     interval=0.2, what="the model server ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{server_log.read_text()[-2000:]}") from None
        page = prose("gunicorn")
        answer = httpx.post(f"{url}/v1/messages", json=conversation(page), headers=ANTHROPIC, timeout=30)
        assert answer.status_code == 200 and "llmlingua" in answer.headers["x-headroom-transforms"]
        sent = sent_page(fresh_mock)
        assert len(sent) < len(page) and "Zanzibargunicorn" in sent  # compressed, the fact kept
    finally:
        stop(proc)
        stop(server)
