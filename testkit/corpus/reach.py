"""Does every corpus answer reach the client when a model needs it? The careful model
(:mod:`testkit.retrieving_model`) asks for each one through a running proxy.

For every case of the corpus and every fact its question needs (each line of each of its
``answers``), an agent request goes through ``headroom proxy`` to the mock upstream, in each
of the four wire formats, with the real SDK of that format: the conversation holds the
case's tool output as a tool result, and ``x-mock-seek`` names the fact. The model answers
``Found: <line>`` when what it received holds the fact, and otherwise calls
``headroom_retrieve`` on the marker compression left (the proxy answers the call and asks
again). The fact *reached* the client when the final answer the client gets quotes it.

What the upstream was sent is counted over every upstream call of the request
(continuations included), with the pipeline's own measure (o200k tokens of what a model
reads: :mod:`headroom.transforms.accounting`), so a proxy compressing and retrieving can be
set beside one forwarding as is (``--no-optimize``): the saving net of retrievals.

Used by ``tests/test_corpus_retrieval.py`` and ``load_tests/corpus_retrieval.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import types

from headroom.formats import named
from headroom.transforms.accounting import message_tokens, value_tokens
from testkit.corpus.case import Case
from testkit.corpus.cases import SYSTEM, all_cases, anthropic_body, openai_body
from testkit.retrieving_model import FOUND, SEEK_HEADER

FORMATS = ("anthropic", "chat", "responses", "gemini")
API_KEY = "sk-corpus-reach"  # the caller: its originals are the ones the model retrieves
GEMINI_MODEL = "gemini-2.5-flash"
TIMEOUT_S = 60.0
LATER_QUESTION = "Run it and keep the output at hand; I will ask about it."


@dataclass(frozen=True)
class Ask:
    """One fact of one case, asked for in one format (streamed or not)."""

    case: Case
    fact: str
    fmt: str
    stream: bool
    later: bool = False  # the conversation's question is a general one: the fact is needed later

    @property
    def sent_case(self) -> Case:
        """The case as the conversation holds it: with its own question, or (``later``) a
        general one, so that compression cannot know which fact will be needed."""
        return replace(self.case, question=LATER_QUESTION) if self.later else self.case


@dataclass(frozen=True)
class Reached:
    """What came of an :class:`Ask`: the final text the client got and what the upstream saw."""

    ask: Ask
    text: str
    upstream_calls: int
    tokens: int  # summed over every upstream request (the pipeline's count)
    first_tokens: int  # the first upstream request's alone (compression without retrieval)
    first_held: bool  # whether the first upstream request held the fact (compression kept it)

    @property
    def reached(self) -> bool:
        """The answer quotes a line holding the fact (``Found: <line>``; ``Not found: <fact>``
        names the fact without having found it)."""
        return self.ask.fact in self.text.partition(FOUND)[2]

    @property
    def retrievals(self) -> int:
        """The careful model asks for one thing per answer: each further upstream call is the
        continuation after one retrieval."""
        return max(0, self.upstream_calls - 1)


def facts(case: Case) -> list[str]:
    """What a later question needs of this case: each line of each answer (a model looks for
    a fact line by line; an answer spanning lines, as a Codex envelope's header, is several)."""
    found: list[str] = []
    for answer in case.answers:
        for line in answer.splitlines():
            if line.strip() and line.strip() not in found:
                found.append(line.strip())
    return found


def asks(formats: tuple[str, ...] = FORMATS, cases: list[Case] | None = None, later: bool = False) -> list[Ask]:
    """Every fact of every case in every format; within a format every other one streamed."""
    out: list[Ask] = []
    for fmt in formats:
        position = 0
        for case in cases if cases is not None else all_cases():
            for fact in facts(case):
                out.append(Ask(case, fact, fmt, stream=position % 2 == 1, later=later))
                position += 1
    return out


# --- the request of each format: the case's tool output as a tool result --------------------


def responses_body(case: Case, call_id: str = "call_corpus1") -> dict:
    """A Codex-like Responses turn: the question, the function call, and its output."""
    return {
        "model": "gpt-5", "instructions": SYSTEM,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": case.question}]},
            {"type": "function_call", "call_id": call_id, "name": case.tool, "arguments": json.dumps(case.tool_input)},
            {"type": "function_call_output", "call_id": call_id, "output": case.content},
        ],
        "tools": [{"type": "function", "name": case.tool, "description": "Run the tool.",
                   "parameters": {"type": "object", "properties": {}}}],
    }


def gemini_contents(case: Case) -> list[types.Content]:
    return [
        types.Content(role="user", parts=[types.Part(text=case.question)]),
        types.Content(role="model", parts=[types.Part.from_function_call(name=case.tool, args=case.tool_input)]),
        types.Content(role="user", parts=[types.Part.from_function_response(
            name=case.tool, response={"output": case.content})]),
    ]


def _gemini_tools(case: Case) -> list[types.Tool]:
    return [types.Tool(function_declarations=[types.FunctionDeclaration(
        name=case.tool, description="Run the tool.", parameters=types.Schema(type="OBJECT", properties={}))])]


# --- the clients: one per format, each the official SDK --------------------------------------


class Clients:
    """The four SDK clients pointed at one proxy, all as the same caller.

    The proxy memoises each tool output's compression per caller (an output keeps its bytes on
    every later turn), so asks whose compression must not see an earlier one's (another
    question) need a caller of their own."""

    def __init__(self, base_url: str, api_key: str = API_KEY) -> None:
        self.anthropic = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=TIMEOUT_S)
        self.openai = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=TIMEOUT_S)
        self.gemini = genai.Client(api_key=api_key, http_options=types.HttpOptions(
            base_url=base_url, timeout=int(TIMEOUT_S * 1000)))

    def ask(self, ask: Ask) -> str:
        """The final text the client gets for ``ask``."""
        return _SENDERS[ask.fmt](self, ask.sent_case, {SEEK_HEADER: ask.fact}, ask.stream)

    def close(self) -> None:
        self.anthropic.close()
        self.openai.close()


def _anthropic(clients: Clients, case: Case, headers: dict, stream: bool) -> str:
    body = anthropic_body(case)
    body.pop("stream", None)
    if stream:
        with clients.anthropic.messages.stream(**body, extra_headers=headers) as events:
            message = events.get_final_message()
    else:
        message = clients.anthropic.messages.create(**body, extra_headers=headers)
    return "".join(block.text for block in message.content if block.type == "text")


def _chat(clients: Clients, case: Case, headers: dict, stream: bool) -> str:
    body = openai_body(case)
    if stream:
        with clients.openai.chat.completions.stream(**body, extra_headers=headers) as events:
            completion = events.get_final_completion()
    else:
        completion = clients.openai.chat.completions.create(**body, extra_headers=headers)
    return completion.choices[0].message.content or ""


def _responses(clients: Clients, case: Case, headers: dict, stream: bool) -> str:
    body = responses_body(case)
    if stream:
        with clients.openai.responses.stream(**body, extra_headers=headers) as events:
            response = events.get_final_response()
    else:
        response = clients.openai.responses.create(**body, extra_headers=headers)
    return response.output_text


def _gemini(clients: Clients, case: Case, headers: dict, stream: bool) -> str:
    config = types.GenerateContentConfig(tools=_gemini_tools(case), http_options=types.HttpOptions(headers=headers))
    contents: Any = gemini_contents(case)
    if stream:
        return "".join(chunk.text or "" for chunk in clients.gemini.models.generate_content_stream(
            model=GEMINI_MODEL, contents=contents, config=config))
    return clients.gemini.models.generate_content(model=GEMINI_MODEL, contents=contents, config=config).text or ""


_SENDERS: dict[str, Callable[[Clients, Case, dict, bool], str]] = {
    "anthropic": _anthropic, "chat": _chat, "responses": _responses, "gemini": _gemini}


# --- what the upstream saw -------------------------------------------------------------------


def _format_of(path: str) -> str | None:
    if path == "/v1/messages":
        return "anthropic"
    if path == "/v1/chat/completions":
        return "chat"
    if path == "/v1/responses":
        return "responses"
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini"
    return None


def upstream_requests(recorded: list[dict]) -> Iterator[tuple[str, dict]]:
    """The model requests among the mock's recording: (format, body)."""
    for request in recorded:
        fmt = _format_of(request["path"])
        if fmt is not None:
            yield fmt, json.loads(request["body"].encode("latin-1"))


def request_tokens(fmt: str, body: dict) -> int:
    """What a model reads of one request, as the pipeline counts it (its receipts' measure)."""
    f = named(fmt)
    return value_tokens(f.fixed_parts(body)) + sum(message_tokens(f.conversation(body)))


def holds(value: Any, fact: str) -> bool:
    """Whether any string in a parsed body contains ``fact``."""
    if isinstance(value, str):
        return fact in value
    if isinstance(value, dict):
        return any(holds(v, fact) for v in value.values())
    if isinstance(value, list):
        return any(holds(v, fact) for v in value)
    return False


def run(clients: Clients, mock, items: list[Ask], progress: Callable[[Reached], None] | None = None) -> list[Reached]:
    """Ask each item in turn; the mock's recording is reset before each, so each result
    counts its own upstream calls."""
    results = []
    for item in items:
        mock.reset()
        text = clients.ask(item)
        sent = list(upstream_requests(mock.requests()))
        counts = [request_tokens(fmt, body) for fmt, body in sent]
        result = Reached(item, text, len(sent), sum(counts), counts[0] if counts else 0,
                         bool(sent) and holds(sent[0][1], item.fact))
        results.append(result)
        if progress is not None:
            progress(result)
    return results


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    facts: int
    reached: int
    kept: int  # facts the first upstream request held (compression kept them)
    retrievals: int
    upstream_calls: int
    tokens: int
    first_tokens: int


def totals(results: list[Reached]) -> Totals:
    return Totals(len(results), sum(r.reached for r in results), sum(r.first_held for r in results),
                  sum(r.retrievals for r in results), sum(r.upstream_calls for r in results),
                  sum(r.tokens for r in results), sum(r.first_tokens for r in results))


HEADER = ("| questions | format | facts reached | kept by compression | retrievals | upstream calls "
          "| tokens sent, --no-optimize | compressed, first calls | compressed + retrieval, all calls "
          "| saved, net of retrievals | reached with --retrieval-tool off |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def rows(label: str, optimised: list[Reached], baseline: list[Reached],
         tool_off: list[Reached] | None = None) -> list[str]:
    """Per format and in all: facts reached, kept, retrievals, upstream calls and tokens with
    compression and retrieval, beside the same asks through ``--no-optimize`` (and, when
    given, the facts reached through a proxy compressing without the tool)."""
    def of(results: list[Reached] | None, fmt: str) -> list[Reached]:
        return [r for r in results or () if fmt == "all" or r.ask.fmt == fmt]

    lines = []
    for fmt in [*dict.fromkeys(r.ask.fmt for r in optimised), "all"]:
        a, b = totals(of(optimised, fmt)), totals(of(baseline, fmt))
        off = totals(of(tool_off, fmt))
        lines.append(f"| {label} | {fmt} | {a.reached} / {a.facts} | {a.kept} | {a.retrievals} | {a.upstream_calls} "
                     f"| {b.tokens:,} | {a.first_tokens:,} | {a.tokens:,} | {saved(a, b):.1%} "
                     f"| {f'{off.reached} / {off.facts}' if tool_off is not None else '–'} |")
    return lines


def saved(optimised: Totals, baseline: Totals) -> float:
    return 1 - optimised.tokens / baseline.tokens if baseline.tokens else 0.0


def per_case(optimised: list[Reached]) -> str:
    """Per case (all formats together): facts reached, kept by compression, and retrievals."""
    lines = [f"{'case':24s} {'reached':>9s} {'kept':>5s} {'retrievals':>10s}"]
    for name in dict.fromkeys(r.ask.case.name for r in optimised):
        mine = totals([r for r in optimised if r.ask.case.name == name])
        lines.append(f"{name:24s} {mine.reached:>4d} / {mine.facts:<3d}{mine.kept:>5d} {mine.retrievals:>10d}")
    return "\n".join(lines)


def run_at(url: str, api_key: str, mock, items: list[Ask]) -> list[Reached]:
    """:func:`run` with a fresh set of clients for the proxy at ``url``, closed after."""
    clients = Clients(url, api_key)
    try:
        return run(clients, mock, items)
    finally:
        clients.close()
