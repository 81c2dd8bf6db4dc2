"""The retrieval policy through the real proxy, in memory and on a real Redis.

A caller's ``Bash`` outputs are compressed (lossily) through ``/v1/messages`` to the mock
upstream, and the model fetches some back through ``/v1/retrieve``. Once retrievals pass
``--retrieval-backoff`` (0.2) of at least 10 lossy compressions, a new ``Bash`` output goes
upstream losslessly, while an earlier block is re-sent with exactly its compressed bytes,
another tool of the same caller and ``Bash`` of another caller are still cut, and
``/stats``, ``/metrics``, the request log and ``headroom report`` all show the counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from headroom.transforms import ccr
from headroom.transforms.retrieval import answer, split_lines
from testkit import ROOT
from testkit.llm_requests import ANTHROPIC_VERSION, HTTP
from testkit.originals import service_log
from testkit.waiting import wait_for

UNKNOWN_KEY = "0123456789abcdef"


@pytest.fixture(scope="module", params=["memory", "redis"])
def policy_proxy(request, start_proxy, tmp_path_factory):
    log = tmp_path_factory.mktemp("policy") / "requests.jsonl"
    flags = ["--no-cache", "--log-file", str(log)]
    if request.param == "redis":
        flags += ["--redis-url", request.getfixturevalue("redis_server").url]
    return start_proxy(*flags), log, request.param


class Session:
    """One caller's conversations through the proxy, and what the upstream saw of each."""

    def __init__(self, proxy, mock, api_key: str) -> None:
        self.proxy, self.mock, self.api_key = proxy, mock, api_key
        self.tag = uuid.uuid4().hex  # finds this test's requests among everything the mock recorded

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key, "anthropic-version": ANTHROPIC_VERSION}

    def turn(self, output: str, tool: str = "Bash", question: str = "Which orders were declined?") -> tuple[str, dict]:
        """Send a conversation whose last tool result is ``output``: (what the upstream got, response headers)."""
        body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [
            {"role": "user", "content": "Look at the API server's log"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": tool,
                                               "input": {"command": "kubectl logs deploy/api"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": output},
                                         {"type": "text", "text": question}]},
        ]}
        response = HTTP.post(f"{self.proxy.url}/v1/messages", json=body,
                             headers={**self.headers(), "x-policy": self.tag})
        assert response.status_code == 200, response.text
        (seen,) = [r for r in self.mock.requests() if r["headers"].get("x-policy") == self.tag][-1:]
        result = json.loads(seen["body"].encode("latin-1"))["messages"][2]["content"][0]["content"]
        return (result if isinstance(result, str) else result[0]["text"]), dict(response.headers)

    def retrieve(self, key: str, **arguments):
        return HTTP.post(f"{self.proxy.url}/v1/retrieve", json={"key": key, **arguments}, headers=self.headers())


def _metrics(proxy) -> dict[tuple[str, tuple], float]:
    text = HTTP.get(f"{proxy.url}/metrics").text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_tool_retrieved_too_often_goes_lossless_for_its_caller_only(policy_proxy, mock):
    proxy, log, kind = policy_proxy
    me = Session(proxy, mock, f"sk-ant-policy-me-{kind}")
    outputs = [service_log(f"{kind}{i}") for i in range(12)]

    sent, keys = [], []
    for output in outputs[:10]:
        text, headers = me.turn(output)
        assert "log:lossy" in headers["x-headroom-transforms"]
        (key,) = ccr.marker_keys(text)
        sent.append(text)
        keys.append(key)

    # The marker's suggested call answers with exactly the lines its note stands for.
    lines = re.search(r'headroom_retrieve key=[0-9a-f]{16} lines="(\d+)-(\d+)"', sent[0])
    first, last = int(lines.group(1)), int(lines.group(2))
    assert f"\u2026 lines {first}\u2013{last} omitted" in sent[0]
    retrieved = me.retrieve(keys[0], lines=f"{first}-{last}")
    assert retrieved.json()["content"] == answer(outputs[0], f"{first}-{last}")
    kept = set(sent[0].split("\n"))
    assert kept.isdisjoint(split_lines(outputs[0])[first - 1:last])

    assert me.retrieve(keys[1], query="ERROR").status_code == 200  # 2 of 10: at the threshold, not past it
    text, headers = me.turn(outputs[10])
    assert "log:lossy" in headers["x-headroom-transforms"] and ccr.marker_keys(text)  # still cut: 11 compressions
    assert me.retrieve(keys[2], query="declined").status_code == 200  # 3 of 11: past 0.2

    text, headers = me.turn(outputs[11])
    assert "policy:lossless" in headers["x-headroom-transforms"] and "log:lossy" not in headers["x-headroom-transforms"]
    assert "[headroom:" not in text and all(line in text for line in split_lines(outputs[11]))
    again, _ = me.turn(outputs[0], question="And which worker served order 97?")
    assert again == sent[0]  # a block sent before keeps its compressed bytes: the prompt cache's prefix holds
    other_tool, _ = me.turn(service_log(f"{kind}-fetch"), tool="fetch_logs")
    assert ccr.marker_keys(other_tool)  # the caller's other tools are still cut
    them = Session(proxy, mock, f"sk-ant-policy-them-{kind}")
    theirs, _ = them.turn(service_log(f"{kind}-them"))
    assert ccr.marker_keys(theirs)  # and so is Bash for another caller
    assert me.retrieve(UNKNOWN_KEY).status_code == 404

    stats = HTTP.get(f"{proxy.url}/stats").json()
    retrievals = stats["retrievals"]
    assert retrievals["by_tool"]["Bash"] == {"ok": 3, "miss": 0, "error": 0}
    assert retrievals["by_tool"]["unknown"]["miss"] == 1 and retrievals["total"] == 4
    assert retrievals["retrieved_tokens"] > 0
    assert stats["tokens_saved_net"] == stats["tokens_before"] - stats["tokens_after"] - retrievals["retrieved_tokens"]
    (backed,) = stats["backed_off"]["now"]
    assert backed["tool"] == "Bash" and stats["backed_off"]["started"] == {"Bash": 1}

    metrics = _metrics(proxy)
    assert metrics[("headroom_retrievals_total", (("outcome", "ok"), ("tool", "Bash")))] == 3
    assert metrics[("headroom_retrievals_total", (("outcome", "miss"), ("tool", "unknown")))] == 1
    assert metrics[("headroom_retrieved_tokens_total", (("tool", "Bash"),))] == retrievals["retrieved_tokens"]
    assert metrics[("headroom_retrieval_backoffs_total", (("tool", "Bash"),))] == 1

    logged = wait_for(lambda: _lines(log, 15 + 4), what="15 requests and 4 retrievals in the log")
    retrieval_lines = [r for r in logged if r["path"] == "/v1/retrieve"]
    assert [r["status"] for r in retrieval_lines] == [200, 200, 200, 404]
    assert sum(r["retrieved_tokens"] for r in logged) == retrievals["retrieved_tokens"]
    assert [r["backed_off"] for r in logged if r["backed_off"]] == [["Bash"]]
    done = subprocess.run([sys.executable, "-m", "headroom", "report", str(log), "--json"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["retrieval"]
    assert report["retrievals"] == 4 and report["retrieved_tokens"] == retrievals["retrieved_tokens"]
    assert report["backed_off"] == {"Bash": {"requests": 1, "callers": 1}}
    assert report["tokens_saved_net"] == sum(r["tokens_saved"] for r in logged) - retrievals["retrieved_tokens"]


def _lines(path, n: int) -> list[dict] | None:
    if not path.exists():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines if len(lines) >= n else None


def test_a_retrieval_the_store_cannot_answer_is_counted_as_an_error(start_proxy, own_redis, mock):
    proxy = start_proxy("--no-cache", "--redis-url", own_redis.url)
    me = Session(proxy, mock, "sk-ant-policy-outage")
    text, _ = me.turn(service_log("outage"))
    (key,) = ccr.marker_keys(text)
    own_redis.kill()
    response = me.retrieve(key, query="declined")
    assert response.status_code == 503 and "unreachable" in response.json()["error"]["message"]
    assert _metrics(proxy)[("headroom_retrievals_total", (("outcome", "error"), ("tool", "unknown")))] == 1
