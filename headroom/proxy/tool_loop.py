"""The retrieval loop: the proxy answers the model's calls to ``headroom_retrieve`` itself.

A request that already declares tools (an agent's), with compression on and
``--retrieval-tool on``, gets the tool appended, with the same bytes on every request
(:meth:`~headroom.formats.base.ToolLoop.declare`), so the cached prefix never changes
because of it. When the model's answer calls it, the proxy reads the original from the
store (:func:`headroom.transforms.ccr.retrieve`, the caller's own partition), answers
(:func:`headroom.transforms.retrieval.answer`), and asks the upstream again with the call and
its result appended: at most ``--max-retrievals`` rounds, the last one asked to answer
without calling a tool. The client gets one ordinary answer (the format merges JSON answers
and splices streams, :mod:`headroom.formats.base`), and never a call to a tool it did not
declare. A retrieval the store cannot answer is a tool error the model reads, never a
failed request.

The client's conversation then differs from what the upstream saw (the retrieval calls and
results are not in it). So that the upstream sees the same prefix on every later turn (the
prompt cache), the loop stores what the upstream saw under a fingerprint of the turn the
client got (:meth:`~headroom.formats.base.ToolLoop.record`), and before compressing a later
request of that caller puts it back (:func:`restore_turns`: one ``get_many``). A record the
store lost only costs a cache miss: the conversation goes as the client sent it.

When the model calls the retrieval tool together with the client's own tools, the client
gets its own calls only; the retrieval results are stored with the turn and placed in the
client's next message, after its own tool results, on every later request.

This module names no format: everything format-shaped is the format's
:class:`~headroom.formats.base.ToolLoop`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import ujson

from headroom.config import ProxyConfig
from headroom.formats import Format
from headroom.formats.base import ToolAnswer, ToolCall, ToolLoop, Turn
from headroom.observability import metrics
from headroom.proxy import http1
from headroom.proxy.body import dumps
from headroom.proxy.exchange import Exchange
from headroom.proxy.upstream import Upstream, UpstreamRequest, read_body
from headroom.state.keys import make_key
from headroom.state.store import Store, StoreUnavailable
from headroom.state.tool_use import BackoffRule
from headroom.transforms import ccr, retrieval, retrieval_policy

log = logging.getLogger("headroom.proxy")

#: Store kind of a turn the client got differently from what the upstream saw.
TURN_KIND = "turn"


def turn_key(caller: str, fingerprint: str) -> str:
    return make_key(TURN_KIND, caller, fingerprint)


def tool_loop_of(config: ProxyConfig, fmt: Format) -> ToolLoop | None:
    """The format's loop when the retrieval tool is on for this deployment (and compression too)."""
    if not config.optimize or config.retrieval_tool != "on":
        return None
    return fmt.tool_loop


async def restore_turns(store: Store, caller: str, loop: ToolLoop, body: dict) -> int:
    """Put back, in ``body``, what the upstream saw of every turn the client got spliced or
    stripped (one ``get_many`` for all of them), last first so that earlier places stay put.
    Returns how many records were applied; a store that is down restores nothing."""
    keys = loop.turn_keys(body)
    if not keys:
        return 0
    try:
        values = await store.get_many([turn_key(caller, fingerprint) for _, fingerprint in keys])
    except StoreUnavailable:
        metrics.store_unavailable()
        return 0
    applied = 0
    for (index, _), value in reversed(list(zip(keys, values))):
        if value is None:
            continue
        try:
            record = ujson.loads(value)
            if isinstance(record, dict):
                loop.restore(body, index, record)
                applied += 1
        except Exception:  # a record that does not fit: the conversation goes as the client sent it
            log.exception("restoring a spliced turn failed; the turn goes as the client sent it")
    return applied


def limit_reached(call: ToolCall, rounds: int) -> ToolAnswer:
    return ToolAnswer(call, f"[headroom_retrieve: not answered: this request already used its {rounds} "
                            "retrieval(s) (--max-retrievals); answer with what you have]", error=True)


#: How a retrieval went (:data:`headroom.transforms.retrieval_policy.Outcome`): "ok" (answered
#: from the original), "miss" (not a key, or nothing stored under it for this caller: unknown,
#: expired, another API key's), "error" (the store is down).
Outcome = retrieval_policy.Outcome


async def answer_call(store: Store, caller: str, call: ToolCall, ttl: float) -> tuple[ToolAnswer, Outcome]:
    """The proxy's answer to one retrieval call, from the caller's own originals, and how it went."""
    key, lines, query = (call.arguments.get(name) for name in ("key", "lines", "query"))
    key = key.strip().lower() if isinstance(key, str) else ""
    if not ccr.is_key(key):
        return ToolAnswer(call, f"[headroom_retrieve: `key` must be the {ccr.KEY_CHARS} hex digits named in a "
                                "[headroom: …] note]", error=True), "miss"
    try:
        original = await ccr.retrieve(store, caller, key)
    except StoreUnavailable:
        metrics.store_unavailable()
        return ToolAnswer(call, "[headroom_retrieve: Headroom's store cannot be reached right now, so the "
                                f"original under key {key} cannot be read; go on without it]", error=True), "error"
    if original is None:
        hours = ttl / 3600
        return ToolAnswer(call, f"[headroom_retrieve: nothing is stored under key {key} for this API key: "
                                f"originals are kept {hours:g} h and only for the API key that sent them; "
                                "go on without it]", error=True), "miss"
    return ToolAnswer(call, retrieval.answer(original, _text(lines), _text(query))), "ok"


def _text(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


@dataclass
class Retrieval:
    """The retrieval loop of one client request: what the upstream was sent, the turns it made
    and the answers the proxy gave, and the upstream calls made for it."""

    loop: ToolLoop
    store: Store
    caller: str
    exchange: Exchange
    upstream: Upstream
    request: UpstreamRequest  # the first upstream call (method, URL, headers: reused for each)
    body: dict  # what the upstream was sent last
    max_rounds: int
    ttl: float  # of the records, as of the originals they point at
    max_response_bytes: int
    backoff: BackoffRule = field(default_factory=BackoffRule)  # the retrieval policy's rule
    rounds: int = 0
    failed: bool = False  # the loop itself failed (a format's bug): the answer ends where it was
    turns: list[Turn] = field(default_factory=list)
    answers: list[list[ToolAnswer]] = field(default_factory=list)

    async def next_body(self, turn: Turn) -> dict | None:
        """After an upstream answer made ``turn``: the next upstream request, or None when this
        answer ends the client's (the model called no retrieval, or also the client's own tools,
        or the limit was reached; the retrieval calls then get their answers on the next request)."""
        if not turn.retrieval:
            if self.turns:
                self.turns.append(turn)
            return None
        if self.rounds >= self.max_rounds:
            answers = [limit_reached(call, self.rounds) for call in turn.retrieval]
        else:
            answered = await asyncio.gather(*(answer_call(self.store, self.caller, call, self.ttl)
                                              for call in turn.retrieval))
            answers = [await self.counted(call, answer, outcome) for call, (answer, outcome)
                       in zip(turn.retrieval, answered)]
        self.turns.append(turn)
        self.answers.append(answers)
        if turn.client_calls or self.rounds >= self.max_rounds:
            return None
        self.rounds += 1
        self.body = self.loop.continue_with(self.body, turn, answers, last=self.rounds >= self.max_rounds)
        return self.body

    async def counted(self, call: ToolCall, answer: ToolAnswer, outcome: Outcome) -> ToolAnswer:
        """Every retrieval the loop answered passes here once: the retrieval policy's counts
        (per caller and tool, metrics, ``/stats``) and the request's (its log line)."""
        key = call.arguments.get("key")
        note = await retrieval_policy.note_retrieval(
            self.store, self.caller, key.strip().lower() if isinstance(key, str) else "", outcome,
            answer.text if not answer.error else "", self.backoff)
        self.exchange.count_retrieval(note)
        return answer

    async def follow(self, turn: Callable[[], Turn]) -> dict | None:
        """:meth:`next_body` of the turn ``turn()`` reads, except that a failure of the loop's own
        (a format's bug) ends the answer where it is instead of failing the request."""
        try:
            return await self.next_body(turn())
        except Exception:
            log.exception("the retrieval loop failed; the answer ends without the retrieval")
            self.failed = True
            return None

    async def open(self, body: dict) -> http1.Response:
        """Send a continuation upstream (same path, query and headers as the client's request)."""
        self.exchange.upstream_calls += 1
        return await self.upstream.open(UpstreamRequest(self.request.method, self.request.url,
                                                         self.request.headers, dumps(body)))

    async def remember(self, visible) -> None:
        """Store what the upstream saw of the turn the client got as ``visible`` (nothing when
        they are the same)."""
        if not self.turns:
            return
        try:
            found, record = self.loop.record(visible, self.turns, self.answers)
            value = dumps(record)  # under each of its fingerprints (a format may give several)
            fingerprints = (found,) if isinstance(found, str) else found
            await self.store.set_many({turn_key(self.caller, fp): value for fp in fingerprints}, ttl=self.ttl)
        except StoreUnavailable:
            metrics.store_unavailable()
        except Exception:  # a later turn then goes as the client sends it: a cache miss, no more
            log.exception("storing a spliced turn failed")

    async def json_answer(self, payload: bytes) -> tuple[int, bytes]:
        """The answer the client gets for a JSON upstream answer: ``payload`` as it is when the
        model called no retrieval; otherwise the merged answer of every upstream call (or a
        continuation's own error, status and body, as the upstream sent it)."""
        try:
            first = ujson.loads(payload)
        except ValueError:
            return 200, payload
        if not isinstance(first, dict):
            return 200, payload
        answers = [first]
        while (body := await self.follow(lambda: self.loop.turn(answers[-1]))) is not None:
            status, raw = await self._call(body)
            try:
                answer = ujson.loads(raw) if status == 200 else None
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                self.exchange.error = self.exchange.error or "retrieval_continuation_failed"
                return status, raw
            answers.append(answer)
        if not self.turns and not self.failed:
            return 200, payload
        try:
            merged = self.loop.merge(answers)  # without the retrieval calls, even if the loop failed
        except Exception:
            log.exception("merging the answers failed; the client gets the last one")
            return 200, dumps(answers[-1])
        await self.remember(self.loop.turn(merged).message)
        return 200, dumps(merged)

    async def _call(self, body: dict) -> tuple[int, bytes]:
        resp = await self.open(body)
        try:
            return resp.status, await read_body(resp, self.max_response_bytes)
        finally:
            resp.release()
