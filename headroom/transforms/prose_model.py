"""ML compression of long prose tool outputs, by the LLMLingua-2 model server.

The deterministic compressors leave prose nearly as it is (whitespace only): prose carries
its meaning in the words. With ``--llmlingua`` the pipeline hands prose tool outputs above
``lingua_min_chars`` (web pages, documentation, long messages; never code, file reads, JSON,
logs or tables, which have their own compressors, and never the system prompt, tool
definitions or user text, which are not tool outputs) to the model server in one call per
request. What the newest user question asks about survives: lines that mention its terms
are kept exactly (only the prose between them goes to the model), and the model is told
to keep the question's words wherever they occur.

The result is memoised like every other transform, so later turns re-send the same bytes,
and the original goes to CCR behind the usual marker. When the model cannot answer in time
(down, loading, overloaded, slow past the timeout, erroring), the blocks go as they are and
are memoised as unchanged: later turns stay byte-identical, and the request is delayed by
at most the timeout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from headroom.transforms import ccr
from headroom.transforms.base import Compressed
from headroom.transforms.terms import Terms

log = logging.getLogger("headroom.pipeline")

TRANSFORM = "llmlingua"
MAX_CHARS = 8_192
TIMEOUT_S = 6.0  # the proxy's own default is headroom.config's llmlingua_timeout_ms


class Reply(Protocol):
    @property
    def texts(self) -> list[str]: ...


class ProseModel(Protocol):
    """The model server as the pipeline sees it (:class:`headroom.workers.model_client.ModelClient`).

    ``compress`` raises an exception with a ``reason`` attribute ("down", "loading",
    "timeout", "overloaded", "error") when it cannot answer."""

    async def compress(self, texts: list[str], rate: float, force_words: list[str], timeout_s: float) -> Reply: ...


@dataclass(frozen=True)
class ProseSettings:
    rate: float = 0.3  # share of tokens kept
    min_chars: int = 2_000  # shorter prose is not worth a model call
    # Most prose characters per request sent to the model: beyond them blocks keep the
    # extractive result. Sized with load_tests/bench_llmlingua.py --timeouts (2-core CPU,
    # ONNX int8, one thread) so that the model answers within timeout_s in >= 95% of requests.
    max_chars: int = MAX_CHARS
    timeout_s: float = TIMEOUT_S


@dataclass(frozen=True)
class Candidate:
    key: str  # the block's memo key
    text: str  # the block after whitespace normalisation, without ``head``
    ccr_key: str
    head: str = ""  # a client's header in front of a command's output (envelope): never reworded


@dataclass(frozen=True)
class Segment:
    text: str
    exact: bool  # a line about the question: kept as it is, never sent to the model


def force_words(terms: Terms) -> list[str]:
    """The question's words, one by one (phrases split), for the model to keep."""
    return sorted({word for term in terms.words for word in term.split()})


def segments(text: str, terms: Terms) -> list[Segment]:
    """Lines that mention the question (two of its terms, or its only one) stay exact; the
    runs of lines between them become one segment each for the model."""
    need = min(2, len(terms.words))
    out: list[Segment] = []
    run: list[str] = []
    for line in text.split("\n"):
        if need and len(terms.find(line)) >= need:
            if run:
                out.append(Segment("\n".join(run), False))
                run = []
            out.append(Segment(line, True))
        else:
            run.append(line)
    if run:
        out.append(Segment("\n".join(run), False))
    return out


def with_marker(original: str, kept: str, ccr_key: str) -> Compressed | None:
    """The compressed text with the CCR marker, or None when it saved nothing."""
    total, left = len(original.split()), len(kept.split())
    if left >= total:
        return None
    text = f"{kept}\n{ccr.marker(total - left, total, 'words', ccr_key)}"
    return Compressed(text, (TRANSFORM,), omitted=total - left)


async def compress_prose(model: ProseModel, settings: ProseSettings, candidates: list[Candidate],
                         terms: Terms) -> tuple[dict[str, Compressed | None], str | None]:
    """Compress every candidate in one model call.

    Returns (memo key → result, ``None`` meaning "send it unchanged"; the failure reason, or
    None when the model answered). Never raises. Candidates past ``settings.max_chars`` (in
    order, summed) are not sent and not in the result: they keep what the extractive
    compressors made of them, rather than making the whole call miss its timeout.
    """
    budget, fitting = settings.max_chars, []
    for candidate in candidates:
        if len(candidate.text) <= budget:
            fitting.append(candidate)
            budget -= len(candidate.text)
    candidates = fitting
    if not candidates:
        return {}, None
    parts = [segments(c.text, terms) for c in candidates]
    to_model = [segment.text for block in parts for segment in block if not segment.exact and segment.text.strip()]
    try:
        reply = await model.compress(to_model, settings.rate, force_words(terms), settings.timeout_s)
    except Exception as exc:  # noqa: BLE001 - ML compression never fails a request
        reason = getattr(exc, "reason", "error")
        return {c.key: None for c in candidates}, reason if isinstance(reason, str) else "error"
    answers = iter(reply.texts)
    results: dict[str, Compressed | None] = {}
    for candidate, block in zip(candidates, parts):
        lines = [s.text if s.exact or not s.text.strip() else next(answers) for s in block]
        result = with_marker(candidate.text, "\n".join(lines), candidate.ccr_key)
        if result is not None and candidate.head:
            result = Compressed(candidate.head + result.text, result.transforms, result.omitted)
        results[candidate.key] = result
    return results, None
