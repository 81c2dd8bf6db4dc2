"""LLMLingua-2 through the real proxy: start-up lines, compression on both backends, fail-open.

Real processes throughout: the proxy through its CLI, its own supervised model server (or a
standalone ``headroom model-server``), a tiny real BERT token classifier built locally, and
the mock upstream as the only fake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from headroom.transforms import ccr
from headroom.transforms.prose_model import MAX_CHARS
from testkit import ROOT
from testkit.ports import free_port
from testkit.services import stop
from testkit.waiting import wait_for

ANTHROPIC = {"x-api-key": "sk-ant-lingua", "anthropic-version": "2023-06-01"}
SENTENCES = (
    "The committee reviewed the quarterly budget and discussed the hiring plans for the next year.",
    "Revenue grew in the north while costs fell slightly compared with the previous quarter.",
    "Customers reported that uploads were slow over mobile networks during the evening peak.",
    "The museum opened a new exhibition about ancient maps and the history of exploration.",
    "Please restart the server after installing the package so that the changes take effect.",
)
QUESTION = "Which xylophone vendor did the committee pick?"


def prose(tag: str, sentences: int = 60) -> str:
    """A long web page of prose (a WebFetch result); the fact asked about sits in the middle."""
    lines = [SENTENCES[i % len(SENTENCES)] for i in range(sentences)]
    lines[sentences // 2] = f"In the end the committee picked the xylophone vendor Zanzibar{tag} for the concert."
    return "\n".join(lines)


def conversation(page: str, question: str = QUESTION) -> dict:
    return {
        "model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "Read the procurement page."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "WebFetch",
                                               "input": {"url": "https://intra.example/procurement"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": page},
                                         {"type": "text", "text": question}]},
        ],
    }


def sent_page(mock) -> str:
    """The tool output as the upstream received it (the mock records raw bytes as latin-1)."""
    body = json.loads(mock.last()["body"].encode("latin-1"))
    return body["messages"][2]["content"][0]["content"]


def health(proxy) -> dict:
    return httpx.get(f"{proxy.url}/health").json()


def wait_ready(proxy, timeout: float = 60) -> None:
    wait_for(lambda: health(proxy).get("llmlingua") == "ready", timeout=timeout, interval=0.1,
             what="the model server loading the model")


def post(proxy, body: dict) -> httpx.Response:
    response = httpx.post(f"{proxy.url}/v1/messages", json=body, headers=ANTHROPIC, timeout=30)
    assert response.status_code == 200, response.text
    return response


def metric(proxy, name: str) -> float:
    text = httpx.get(f"{proxy.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


# -- start-up lines ------------------------------------------------------------------------


def test_start_up_says_llmlingua_is_available(start_proxy, lingua_model):
    proxy = start_proxy()
    assert "LLMLingua: available (enable with --llmlingua for ML compression)" in proxy.output()
    assert "llmlingua" not in health(proxy)  # the spec's /health shape when it is off


def test_start_up_says_enabled_with_the_device_in_use(start_proxy, lingua_model):
    proxy = start_proxy("--llmlingua", "--llmlingua-model", str(lingua_model), "--llmlingua-rate", "0.4")
    assert "LLMLingua: ENABLED (device=cpu, rate=0.4)" in proxy.output()
    wait_ready(proxy)


def test_requested_but_not_installed_warns_and_serves(start_proxy, fresh_mock, tmp_path):
    # Python's own convention for "this module cannot be imported": None in sys.modules.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n"
                                               "sys.modules['transformers'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proxy = start_proxy("--llmlingua", env=env)
    assert ("WARNING: LLMLingua requested but not installed. Install with: pip install headroom-ai[llmlingua]"
            in proxy.output())
    assert post(proxy, conversation(prose("a"))).headers["x-headroom-transforms"] != "llmlingua"
    assert "llmlingua" not in health(proxy)


# -- compression ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_prose_is_compressed_memoised_and_retrievable(start_proxy, fresh_mock, lingua_model, lingua_export,
                                                      backend):
    proxy = start_proxy("--llmlingua", "--llmlingua-model", str(lingua_model), "--llmlingua-backend", backend,
                        "--no-cache")
    wait_ready(proxy)
    stats = httpx.get(f"{proxy.url}/stats").json()["llmlingua"]
    assert stats["state"] == "ready" and stats["backend"].startswith(backend)
    page = prose(backend)
    first = post(proxy, conversation(page))
    assert "llmlingua" in first.headers["x-headroom-transforms"]
    sent = sent_page(fresh_mock)
    assert len(sent) < 0.8 * len(page)
    assert f"Zanzibar{backend}" in sent and "xylophone" in sent  # the question's words are kept
    assert "words omitted; headroom_retrieve key=" in sent
    # A later turn, with another question: the block goes out byte for byte as the first time.
    later = conversation(page, "And what did customers report?")
    later["messages"] += [{"role": "assistant", "content": "Noted."}, {"role": "user", "content": "Thanks."}]
    post(proxy, later)
    assert sent_page(fresh_mock) == sent
    key = ccr.marker_keys(sent)[-1]
    original = httpx.get(f"{proxy.url}/v1/retrieve/{key}", headers=ANTHROPIC)
    assert original.status_code == 200 and original.json()["content"] == page
    assert metric(proxy, "headroom_llmlingua_compressions_total") >= 1
    assert metric(proxy, "headroom_model_server_batch_windows_count") >= 1  # written by the model server


def test_a_codex_command_header_is_never_reworded(start_proxy, fresh_mock, lingua_model):
    """Codex wraps a command's output in a header (exit code, wall time): the model compresses
    only the output after it; the header goes upstream byte for byte."""
    proxy = start_proxy("--llmlingua", "--llmlingua-model", str(lingua_model), "--no-cache")
    wait_ready(proxy)
    header = ("Chunk ID: 4f1c2a\nWall time: 0.0312 seconds\nProcess exited with code 0\n"
              "Original token count: 1500\nOutput:\n")
    # A few long paragraphs: a shell's output of 20 lines or more would be read as a log.
    lines = prose("Codex").split("\n")
    page = "\n\n".join(" ".join(lines[i:i + 10]) for i in range(0, len(lines), 10))
    body = {"model": "gpt-4.1", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Read the page."}]},
        {"type": "function_call", "call_id": "call_1", "name": "exec_command",
         "arguments": json.dumps({"cmd": "curl -s https://intra.example/procurement | html2text"})},
        {"type": "function_call_output", "call_id": "call_1", "output": header + page},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]}
    answer = httpx.post(f"{proxy.url}/v1/responses", json=body, timeout=30,
                        headers={"authorization": "Bearer sk-lingua-codex"})
    assert answer.status_code == 200, answer.text
    assert "llmlingua" in answer.headers["x-headroom-transforms"]
    sent = json.loads(fresh_mock.last()["body"].encode("latin-1"))["input"][2]["output"]
    assert sent.startswith(header) and len(sent) < 0.8 * len(header + page)
    assert "ZanzibarCodex" in sent and "words omitted; headroom_retrieve key=" in sent


def test_code_json_and_short_prose_never_reach_the_model(start_proxy, fresh_mock, lingua_model):
    proxy = start_proxy("--llmlingua", "--llmlingua-model", str(lingua_model), "--no-cache")
    wait_ready(proxy)
    source = "\n".join(f"def handler_{i}(request):\n    return respond(request, status={200 + i})" for i in range(60))
    body = conversation(source)
    body["messages"][1]["content"][0].update(name="Read", input={"file_path": "/app/handlers.py"})
    post(proxy, body)
    assert sent_page(fresh_mock) == source
    short = prose("short", sentences=8)  # under the 2,000-character minimum
    post(proxy, conversation(short))
    assert sent_page(fresh_mock) == short
    assert metric(proxy, "headroom_llmlingua_compressions_total") == 0
    # Past the most the model is given per request: the extractive compressor cuts it first
    # (what it keeps may then go to the model), never the whole page in one late model call.
    huge = prose("huge", sentences=400)
    assert len(huge) > MAX_CHARS
    post(proxy, conversation(huge))
    sent = sent_page(fresh_mock)
    assert "Zanzibarhuge" in sent and len(sent) < len(huge) / 2


# -- fail-open -----------------------------------------------------------------------------


def test_a_slow_model_costs_at_most_the_timeout_and_the_block_stays_as_sent(start_proxy, fresh_mock,
                                                                             lingua_model):
    proxy = start_proxy("--llmlingua", "--llmlingua-model", str(lingua_model), "--llmlingua-timeout-ms", "1",
                        "--no-cache")
    wait_ready(proxy)
    page = prose("slow")
    started = time.monotonic()
    response = post(proxy, conversation(page))
    assert time.monotonic() - started < 5
    assert "llmlingua" not in response.headers["x-headroom-transforms"]
    assert sent_page(fresh_mock) == page
    assert metric(proxy, 'headroom_llmlingua_fallbacks_total{reason="timeout"}') == 1
    assert httpx.get(f"{proxy.url}/stats").json()["llmlingua_fallbacks"] == {"timeout": 1}
    post(proxy, conversation(page, "Anything else?"))  # memoised as unchanged: never sent differently
    assert sent_page(fresh_mock) == page


def test_killing_the_model_server_fails_open_and_it_comes_back(start_proxy, fresh_mock, lingua_model):
    proxy = start_proxy("--llmlingua", "--llmlingua-model", str(lingua_model), "--workers", "2", "--no-cache")
    wait_ready(proxy)
    pid = httpx.get(f"{proxy.url}/stats").json()["llmlingua"]["pid"]
    os.kill(pid, signal.SIGKILL)
    pages = [prose(f"down{i}") for i in range(6)]
    for page in pages:  # every request succeeds, uncompressed, while the server is away
        assert post(proxy, conversation(page)).status_code == 200
    assert metric(proxy, "headroom_llmlingua_fallbacks_total") >= 1
    wait_ready(proxy, timeout=30)  # restarted by the supervisor
    assert httpx.get(f"{proxy.url}/stats").json()["llmlingua"]["pid"] != pid
    assert "model server (pid" in proxy.output() and "restarting it" in proxy.output()
    assert "llmlingua" in post(proxy, conversation(prose("back"))).headers["x-headroom-transforms"]


# -- the standalone model server -------------------------------------------------------------


@pytest.fixture
def standalone_server(lingua_model, tmp_path):
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "model-server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "headroom", "model-server", "--host", "127.0.0.1",
                                 "--port", str(port), "--token", "s3cret", "--llmlingua-model", str(lingua_model),
                                 "--metrics-port", str(metrics_port)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    proc.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    yield f"tcp://127.0.0.1:{port}", proc, log
    stop(proc)


def test_proxies_share_a_standalone_model_server_over_tcp_with_its_token(start_proxy, fresh_mock,
                                                                         standalone_server):
    url, proc, log = standalone_server
    proxy = start_proxy("--llmlingua", "--model-server-url", url, "--model-server-token", "s3cret", "--no-cache")
    assert f"LLMLingua: ENABLED (model server {url}, rate=0.3)" in proxy.output()
    wait_ready(proxy)
    assert "llmlingua" in post(proxy, conversation(prose("tcp"))).headers["x-headroom-transforms"]
    # The standalone server reports its own batches on --metrics-port (Prometheus scrapes it).
    scraped = httpx.get(proc.metrics_url, timeout=5).text
    assert any(line.startswith("headroom_model_server_batch_windows_count") and float(line.split()[-1]) >= 1
               for line in scraped.splitlines()), scraped[:2000]
    intruder = start_proxy("--llmlingua", "--model-server-url", url, "--model-server-token", "wrong", "--no-cache")
    page = prose("intruder")
    response = post(intruder, conversation(page))  # refused by the model server: served uncompressed
    assert "llmlingua" not in response.headers["x-headroom-transforms"] and sent_page(fresh_mock) == page
    assert health(intruder)["llmlingua"] == "down"
    anonymous = start_proxy("--llmlingua", "--model-server-url", url, "--no-cache")
    assert "llmlingua" not in post(anonymous, conversation(prose("anon"))).headers["x-headroom-transforms"]
    assert "s3cret" not in Path(log).read_text() + proxy.output() + intruder.output()
