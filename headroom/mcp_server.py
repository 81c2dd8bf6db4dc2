"""``headroom mcp``: the ``headroom_retrieve`` tool as a stdio MCP server.

Claude Code, Codex and Cursor start MCP servers themselves and offer their tools to the
model, so with this server the model can act on a marker without the proxy declaring any
tool (``claude mcp add headroom -- headroom mcp``). It holds no originals: each call is a
``POST /v1/retrieve`` to the running proxy (``--url``, else ``HEADROOM_URL``, else
http://127.0.0.1:8787), which answers through :func:`headroom.transforms.retrieval.answer`.

Originals belong to the API key whose request produced them, so the server sends the key
the client itself uses, read from the same environment variables (``ANTHROPIC_API_KEY``,
``OPENAI_API_KEY``, ``GEMINI_API_KEY``, ``GOOGLE_API_KEY``). An agent started by a user
whose shell holds several keys may have stored an original under any of them, so each is
tried in that order until one finds it (each try but the last marked as a probe, so that the
proxy counts the retrieval once); a key never appears in a message. Every failure
(no key, proxy down, unknown or expired key, another caller's key) is a tool error whose
text says what to do: the model reads it, the server never crashes on it.

The official ``mcp`` package (``pip install 'headroom-ai[mcp]'``) is imported only when the
server starts, so the base install, and every other command, does without it. Written
against its 2.x low-level ``Server``, whose tool list is given as is: the tool's JSON
schema comes from :mod:`headroom.transforms.retrieval`, byte for byte the one the proxy
would declare.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # imported when the server runs: every other command parses its flags without it
    import aiohttp

DEFAULT_URL = "http://127.0.0.1:8787"
URL_ENV = "HEADROOM_URL"
ADMIN_TOKEN_ENV = "HEADROOM_ADMIN_TOKEN"  # the proxy's own --admin-token variable: /v1/retrieve needs it when set
INSTALL_HINT = "pip install 'headroom-ai[mcp]'"
TIMEOUT_S = 30.0

#: Where each client keeps its key, in the order tried, and the headers its own client sends
#: it in (``{key}`` stands for the key), so the proxy hashes it to the same caller and answers
#: errors in that client's shape.
KEY_VARIABLES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("ANTHROPIC_API_KEY", (("x-api-key", "{key}"), ("anthropic-version", "2023-06-01"))),
    ("OPENAI_API_KEY", (("authorization", "Bearer {key}"),)),
    ("GEMINI_API_KEY", (("x-goog-api-key", "{key}"),)),
    ("GOOGLE_API_KEY", (("x-goog-api-key", "{key}"),)),
)


@dataclass(frozen=True)
class Credential:
    variable: str  # named in messages; the value never is
    template: tuple[tuple[str, str], ...]  # the headers, from KEY_VARIABLES
    value: str

    def headers(self) -> dict[str, str]:
        """The key as its own client sends it."""
        return {name: text.replace("{key}", self.value) for name, text in self.template}


@dataclass(frozen=True)
class Settings:
    url: str
    credentials: tuple[Credential, ...]
    admin_token: str | None = None


@dataclass(frozen=True)
class Outcome:
    text: str
    is_error: bool = False


def credentials_from(environ: Mapping[str, str]) -> tuple[Credential, ...]:
    found: list[Credential] = []
    for variable, template in KEY_VARIABLES:
        value = environ.get(variable, "").strip()
        if value and all(value != seen.value for seen in found):
            found.append(Credential(variable, template, value))
    return tuple(found)


def proxy_url(given: str | None, environ: Mapping[str, str]) -> str:
    """The proxy's base URL; ValueError (a one-line message) when it is not an http(s) URL."""
    url = (given or environ.get(URL_ENV) or DEFAULT_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL (the running proxy, as {DEFAULT_URL})")
    return url


def settings_from(given_url: str | None, environ: Mapping[str, str]) -> Settings:
    return Settings(proxy_url(given_url, environ), credentials_from(environ),
                    environ.get(ADMIN_TOKEN_ENV) or None)


def _arguments(raw: Mapping[str, Any] | None) -> dict[str, str] | str:
    """The call's arguments as ``/v1/retrieve`` takes them, or what is wrong with them. A line
    number sent as a JSON number is taken as the text it stands for."""
    raw = raw or {}
    key = raw.get("key")
    if not isinstance(key, str) or not key.strip():
        return 'headroom_retrieve needs "key": the 16 hex digits after "key=" in a [headroom: …] note'
    body = {"key": key.strip()}
    for name in ("lines", "query"):
        value = raw.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and name == "lines":
            value = str(value)
        if value is None:
            continue
        if not isinstance(value, str):
            return f'headroom_retrieve: "{name}" must be text ("120-245" for lines, words to look for as query)'
        body[name] = value
    return body


def _message(payload: Any) -> str:
    """The message of a native error body (every format puts it in ``error.message``)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else "no message"


async def retrieve(settings: Settings, raw_arguments: Mapping[str, Any] | None,
                   session: aiohttp.ClientSession) -> Outcome:
    """Ask the proxy for the original as each key in turn; the first that holds it answers."""
    import aiohttp

    body = _arguments(raw_arguments)
    if isinstance(body, str):
        return Outcome(body, is_error=True)
    if not settings.credentials:
        names = ", ".join(variable for variable, _ in KEY_VARIABLES)
        return Outcome(f"headroom_retrieve has no API key to ask with: originals belong to the key whose requests "
                       f"Headroom compressed; set one of {names} where headroom mcp is started", is_error=True)
    from headroom.transforms.retrieval import PROBE_HEADER

    admin = {"x-headroom-admin-token": settings.admin_token} if settings.admin_token else {}
    for number, credential in enumerate(settings.credentials, 1):
        probe = {PROBE_HEADER: "1"} if number < len(settings.credentials) else {}
        try:
            async with session.post(f"{settings.url}/v1/retrieve", json=body,
                                    headers={**credential.headers(), **admin, **probe}) as response:
                status, payload = response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Outcome(f"The Headroom proxy at {settings.url} did not answer ({type(exc).__name__}): is "
                           f"`headroom proxy` running there? (headroom mcp --url, or {URL_ENV})", is_error=True)
        except ValueError:
            return Outcome(f"{settings.url} answered with something other than JSON: is it the Headroom proxy? "
                           f"(headroom mcp --url, or {URL_ENV})", is_error=True)
        if status == 200 and isinstance(payload, dict) and isinstance(payload.get("content"), str):
            return Outcome(payload["content"])
        if status != 404:
            return Outcome(f"The Headroom proxy at {settings.url} refused the retrieval ({status}): "
                           f"{_message(payload)}", is_error=True)
    tried = ", ".join(credential.variable for credential in settings.credentials)
    return Outcome(f"No stored original {body['key']!r} for the API key in {tried}: the key is mistyped, it "
                   f"expired (--ccr-ttl), or it was stored for another API key", is_error=True)


def build_server(settings: Settings) -> Any:
    """The MCP server (``mcp.server.lowlevel.Server``) offering ``headroom_retrieve``."""
    import aiohttp
    import mcp.types as types
    from mcp.server.lowlevel import Server

    from headroom import __version__
    from headroom.transforms.retrieval import INPUT_SCHEMA, TOOL_DESCRIPTION, TOOL_NAME

    tool = types.Tool(name=TOOL_NAME, description=TOOL_DESCRIPTION, input_schema=INPUT_SCHEMA)

    async def list_tools(_context: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool])

    async def call_tool(_context: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != TOOL_NAME:
            outcome = Outcome(f"Unknown tool {params.name!r}: this server offers {TOOL_NAME} only", is_error=True)
        else:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
                outcome = await retrieve(settings, params.arguments, session)
        return types.CallToolResult(content=[types.TextContent(type="text", text=outcome.text)],
                                    is_error=outcome.is_error)

    return Server("headroom", version=__version__,
                  instructions=f"{TOOL_NAME} gets back what Headroom left out of a tool result: call it with the "
                               "key of a [headroom: … key=K …] note.",
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(settings: Settings) -> None:
    from mcp.server.stdio import stdio_server

    server = build_server(settings)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def add_parser(commands: Any) -> None:
    mcp = commands.add_parser(
        "mcp", help="serve the headroom_retrieve tool to MCP clients (Claude Code, Codex, Cursor) over stdio",
        description="A stdio MCP server offering headroom_retrieve, answered by the running proxy's /v1/retrieve "
                    "for the API key in ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY or GOOGLE_API_KEY "
                    f"(HEADROOM_ADMIN_TOKEN too when the proxy has one). Needs: {INSTALL_HINT}. "
                    "Claude Code: claude mcp add headroom -- headroom mcp",
    )
    mcp.add_argument("--url", help=f"the running proxy [env {URL_ENV}] (default: {DEFAULT_URL})")


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args.url, os.environ)
    except ValueError as exc:
        print(f"headroom: error: --url {exc}", file=sys.stderr)
        return 2
    try:
        import mcp.server.lowlevel  # noqa: F401  (present, and the 2.x API)
    except ImportError:
        print(f"headroom: error: headroom mcp needs the MCP SDK (mcp 2.x). Install with: {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    import anyio

    anyio.run(serve, settings)
    return 0
