"""``headroom mcp`` through the official MCP client, against a real proxy.

The client library (``mcp.client.stdio``) spawns ``python -m headroom mcp`` exactly as
Claude Code or Codex would, with the API key in the environment; originals are stored by
the real proxy's ``/v1/compress`` under that key. What the model would see is checked: the
tool's definition, the original or its lines or matches, and for every failure a tool
error (``is_error``) it can read, after which the same server still answers.
"""

from __future__ import annotations

import os
import sys
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from headroom import cli
from headroom.transforms.retrieval import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME, answer
from testkit import ROOT
from testkit.leftovers import SESSION_ENV
from testkit.llm_requests import HTTP
from testkit.originals import service_log, store_original
from testkit.ports import free_port

MINE = "sk-ant-mcp-mine"
THEIRS = "sk-ant-mcp-theirs"
UNKNOWN_KEY = "0123456789abcdef"
SESSION_S = 60  # bound on one whole client session: start, calls, shutdown


@pytest.fixture(scope="module")
def stored(proxy):
    original = service_log("mcp")
    return original, store_original(proxy.url, MINE, original)


@asynccontextmanager
async def connected(url: str, env: dict[str, str], errlog):
    """A session with ``headroom mcp --url URL``, its environment only ``env`` (and what
    Python needs), so no key from the test run's own environment leaks in."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "headroom", "mcp", "--url", url], cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT), SESSION_ENV: os.environ.get(SESSION_ENV, ""), **env},
    )
    with anyio.fail_after(SESSION_S):
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


@pytest.fixture
def errlog(tmp_path):
    with open(tmp_path / "mcp-stderr.log", "w+") as log:
        yield log


def text_of(result) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


async def test_it_offers_headroom_retrieve_with_the_shared_definition(proxy, errlog):
    async with connected(proxy.url, {"ANTHROPIC_API_KEY": MINE}, errlog) as session:
        tools = (await session.list_tools()).tools
    assert [tool.name for tool in tools] == [TOOL_NAME]
    assert tools[0].input_schema == INPUT_SCHEMA
    assert tools[0].description == TOOL_DESCRIPTION


async def test_it_answers_by_key_lines_and_query_from_the_proxy(proxy, stored, errlog):
    original, key = stored
    async with connected(proxy.url, {"ANTHROPIC_API_KEY": MINE}, errlog) as session:
        for arguments in ({}, {"lines": "190-196"}, {"lines": 97}, {"query": "ord-mcp-00291"},
                          {"lines": "1-150", "query": "declined"}):
            result = await session.call_tool(TOOL_NAME, {"key": key, **arguments})
            assert not result.is_error, text_of(result)
            lines = arguments.get("lines")
            assert text_of(result) == answer(original, None if lines is None else str(lines), arguments.get("query"))
    assert "291:" in answer(original, None, "ord-mcp-00291")  # the query found the one line asked about


async def test_each_key_in_the_environment_is_tried(proxy, stored, errlog):
    """A shell holding another provider's key too: the original is found under the one that stored it."""
    original, key = stored
    async with connected(proxy.url, {"ANTHROPIC_API_KEY": THEIRS, "OPENAI_API_KEY": MINE}, errlog) as session:
        result = await session.call_tool(TOOL_NAME, {"key": key})
    assert not result.is_error, text_of(result)
    assert text_of(result) == original


async def test_a_retrieval_tried_with_several_keys_is_counted_once(start_proxy, errlog):
    """The proxy counts what headroom mcp fetched (the policy, /stats, the metrics) once: the
    try with a key that does not hold the original is a probe, not a miss; a last try is."""
    counted = start_proxy("--no-cache")
    key = store_original(counted.url, MINE, service_log("mcp-once"))
    async with connected(counted.url, {"ANTHROPIC_API_KEY": THEIRS, "OPENAI_API_KEY": MINE}, errlog) as session:
        found = await session.call_tool(TOOL_NAME, {"key": key, "query": "declined"})
    async with connected(counted.url, {"ANTHROPIC_API_KEY": THEIRS}, errlog) as session:
        missed = await session.call_tool(TOOL_NAME, {"key": key})
    assert not found.is_error and missed.is_error
    retrievals = HTTP.get(f"{counted.url}/stats").json()["retrievals"]
    assert retrievals["by_outcome"] == {"ok": 1, "miss": 1, "error": 0}
    assert retrievals["by_tool"]["fetch_orders"] == {"ok": 1, "miss": 0, "error": 0}  # the tool it was stored for


async def test_failures_are_tool_errors_and_the_server_keeps_answering(proxy, stored, errlog):
    original, key = stored
    async with connected(proxy.url, {"ANTHROPIC_API_KEY": THEIRS}, errlog) as session:
        theirs = await session.call_tool(TOOL_NAME, {"key": key, "query": "ERROR"})
        unknown = await session.call_tool(TOOL_NAME, {"key": UNKNOWN_KEY})
        no_key = await session.call_tool(TOOL_NAME, {"lines": "1-5"})
        bad_type = await session.call_tool(TOOL_NAME, {"key": key, "query": ["ERROR"]})
        another_tool = await session.call_tool("Bash", {"command": "ls"})
    for result in (theirs, unknown, no_key, bad_type, another_tool):
        assert result.is_error
    assert "No stored original" in text_of(theirs) and "ANTHROPIC_API_KEY" in text_of(theirs)
    assert "another API key" in text_of(theirs)
    assert "card expired" not in text_of(theirs) and THEIRS not in text_of(theirs)  # neither data nor secret
    assert UNKNOWN_KEY in text_of(unknown)
    assert '"key"' in text_of(no_key)
    assert '"query" must be text' in text_of(bad_type)
    assert TOOL_NAME in text_of(another_tool)
    async with connected(proxy.url, {"ANTHROPIC_API_KEY": MINE}, errlog) as session:
        assert text_of(await session.call_tool(TOOL_NAME, {"key": key})) == original


async def test_without_an_api_key_it_says_which_variables_to_set(proxy, stored, errlog):
    _, key = stored
    async with connected(proxy.url, {}, errlog) as session:
        result = await session.call_tool(TOOL_NAME, {"key": key})
    assert result.is_error
    assert "ANTHROPIC_API_KEY" in text_of(result) and "OPENAI_API_KEY" in text_of(result)


async def test_a_proxy_that_is_down_is_a_tool_error(stored, errlog):
    _, key = stored
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with connected(url, {"ANTHROPIC_API_KEY": MINE}, errlog) as session:
        first = await session.call_tool(TOOL_NAME, {"key": key})
        second = await session.call_tool(TOOL_NAME, {"key": key, "lines": "1"})
    for result in (first, second):
        assert result.is_error
        assert url in text_of(result) and "headroom proxy" in text_of(result)


async def test_a_proxy_with_an_admin_token_needs_it_in_the_environment(start_proxy, errlog):
    guarded = start_proxy("--no-cache", "--admin-token", "mcp-admin-secret")
    original = service_log("mcp-admin")
    key = store_original(guarded.url, MINE, original, admin_token="mcp-admin-secret")
    async with connected(guarded.url, {"ANTHROPIC_API_KEY": MINE}, errlog) as session:
        refused = await session.call_tool(TOOL_NAME, {"key": key})
    assert refused.is_error and "admin token" in text_of(refused)
    env = {"ANTHROPIC_API_KEY": MINE, "HEADROOM_ADMIN_TOKEN": "mcp-admin-secret"}
    async with connected(guarded.url, env, errlog) as session:
        allowed = await session.call_tool(TOOL_NAME, {"key": key, "lines": "97"})
    assert not allowed.is_error, text_of(allowed)
    assert text_of(allowed) == answer(original, "97", None)


def test_without_the_sdk_it_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mcp.server.lowlevel", None)  # as if mcp were not installed
    assert cli.main(["mcp"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pip install 'headroom-ai[mcp]'" in error


def test_a_url_that_is_not_http_is_a_one_line_error(capsys):
    assert cli.main(["mcp", "--url", "redis://127.0.0.1:6379"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--url" in error and "http://" in error
