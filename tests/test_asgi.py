"""``headroom.proxy.server:app`` under an ASGI server (uvicorn), configured from the environment."""

from __future__ import annotations

import os
import subprocess
import sys

import anthropic
import pytest

from testkit.ports import free_port
from testkit.services import Proxy, stop, wait_until_ready


@pytest.fixture
def asgi_proxy(mock, tmp_path):
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {**os.environ, "ANTHROPIC_TARGET_API_URL": mock.url, "OPENAI_TARGET_API_URL": mock.url,
           "HEADROOM_CACHE": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "headroom.proxy.server:app", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/health", proc, log)
        yield Proxy(f"http://127.0.0.1:{port}", proc, log)
    finally:
        stop(proc)


def test_streams_through_the_asgi_app(asgi_proxy, fresh_mock):
    client = anthropic.Anthropic(base_url=asgi_proxy.url, api_key="sk-ant-asgi", max_retries=0)
    with client.messages.stream(model="claude-opus-4-5", max_tokens=16,
                                messages=[{"role": "user", "content": "via asgi"}]) as stream:
        text = "".join(stream.text_stream)
    assert text.startswith("mock reply: via asgi")
    assert fresh_mock.last()["path"] == "/v1/messages"
