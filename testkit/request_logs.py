"""Realistic request logs (``--log-file``), any size, fast: for ``headroom report``'s tests and timing.

:func:`write_log` builds a pool of records shaped like the proxy's (both providers, several
models and callers, streams, errors, prompt-cache reads and writes, dollar figures), encodes
them with the proxy's own writer (:func:`headroom.observability.request_log.encode`), and then
writes ``lines`` lines cycling through the pool with fresh timestamps and request ids spliced in
(so a million lines take a couple of seconds). Every ``malformed_every``-th line is cut short,
as a crash mid-write would leave it. It returns the totals a correct report must show.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from headroom.observability.request_log import FIELDS, encode

MODELS = (
    ("anthropic", "claude-sonnet-4-5", "/v1/messages", 3.0, 15.0),
    ("anthropic", "claude-opus-4-5", "/v1/messages", 5.0, 25.0),
    ("openai", "gpt-4o", "/v1/chat/completions", 2.5, 10.0),
    ("openai", "gpt-4o-mini", "/v1/chat/completions", 0.15, 0.6),
)


@dataclass
class GeneratedLog:
    path: Path
    lines: int = 0  # lines written, malformed ones included
    malformed: int = 0
    requests: int = 0
    errors: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    usd_spent: float = 0.0
    usd_saved: float = 0.0
    days: dict[str, int] = field(default_factory=dict)  # requests per day


def _record(rng: random.Random, callers: list[str]) -> dict:
    provider, model, path, in_rate, out_rate = rng.choice(MODELS)
    status = rng.choices((200, 429, 500, 529), (96, 2, 1, 1))[0]
    before = rng.randint(800, 60_000)
    after = before if rng.random() < 0.3 else int(before * rng.uniform(0.15, 0.9))
    output = rng.randint(5, 2_000)
    if status != 200:
        inp = out = read = write = 0
        spent = saved = 0.0
    elif provider == "anthropic":
        read = int(after * rng.uniform(0, 0.9)) if rng.random() < 0.7 else 0
        write = int((after - read) * rng.uniform(0, 0.8))
        inp, out = after - read - write, output
        spent = (inp * in_rate + read * in_rate * 0.1 + write * in_rate * 1.25 + out * out_rate) / 1e6
        saved = (before - after) * in_rate * rng.choice((0.1, 1.0, 1.25)) / 1e6
    else:
        read = (int(after * rng.uniform(0, 0.9)) // 128) * 128 if rng.random() < 0.5 else 0
        inp, write, out = after - read, 0, output
        spent = (inp * in_rate + read * in_rate * 0.5 + out * out_rate) / 1e6
        saved = (before - after) * in_rate * rng.choice((0.5, 1.0)) / 1e6
    record = dict.fromkeys(FIELDS)
    record.update(
        timestamp="2026-01-01T00:00:00.000Z", request_id="hr_" + "0" * 24, provider=provider, model=model, path=path,
        stream=rng.random() < 0.6, status=status, tokens_before=before, tokens_after=after,
        tokens_saved=before - after, input_tokens=inp, output_tokens=out, cache_read_tokens=read,
        cache_write_tokens=write, cost_usd=round(spent, 8), usd_spent=round(spent, 8), usd_saved=round(saved, 8),
        latency_ms=round(rng.uniform(200, 20_000), 3), overhead_ms=round(rng.uniform(0.5, 8), 3),
        ttfb_ms=round(rng.uniform(100, 2_000), 3), cache=rng.choice(("miss", "bypass", None)),
        transforms=rng.choice(([], ["json:table"], ["json:table", "json:lossy"], ["logs:dedupe", "code:skeleton"])),
        limited="rpm" if status == 429 else None,
        error=None if status == 200 else ("rate_limited" if status == 429 else f"upstream_{status // 100}xx"),
        api_key_hash=rng.choice(callers),
    )
    return record


def write_log(path: Path, lines: int, days: int = 30, start: date = date(2026, 1, 1), seed: int = 7,
              malformed_every: int = 250_000, compress: bool = False, pool: int = 4_000) -> GeneratedLog:
    """Write ``lines`` log lines over ``days`` days to ``path`` (gzip if ``compress``); the expected totals."""
    rng = random.Random(seed)
    callers = [f"{rng.getrandbits(128):032x}" for _ in range(8)]
    records = [_record(rng, callers) for _ in range(pool)]
    encoded = [encode(r) for r in records]
    # The writer's layout: {"timestamp":"<24 chars>","request_id":"hr_<24 hex>",...
    ts_at, id_at = 14, 14 + 24 + len('","request_id":"hr_')
    assert all(e[ts_at - 1:ts_at] == b'"' and e[id_at - 3:id_at] == b"hr_" for e in encoded)
    uses = [0] * pool
    result = GeneratedLog(path=path, lines=lines)
    day_names = [(start + timedelta(days=d)).isoformat() for d in range(days)]
    per_day = [0] * days
    opener = gzip.open(path, "wb", compresslevel=1) if compress else open(path, "wb")
    with opener as out:
        chunk: list[bytes] = []
        for i in range(lines):
            k = i % pool
            line = encoded[k]
            d = i * days // lines
            second = (i * days * 86_400 // lines) % 86_400
            ts = f"{day_names[d]}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.{i % 1000:03d}Z"
            line = line[:ts_at] + ts.encode() + line[ts_at + 24:id_at] + f"{i:024x}".encode() + line[id_at + 24:]
            if malformed_every and i % malformed_every == malformed_every - 1:
                line = line[: len(line) // 2] + b"\n"
                result.malformed += 1
            else:
                uses[k] += 1
                per_day[d] += 1
            chunk.append(line)
            if len(chunk) >= 10_000:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    for record, n in zip(records, uses):
        if n:
            result.requests += n
            result.errors += n * (record["status"] >= 400 or record["error"] is not None)
            result.tokens_before += n * record["tokens_before"]
            result.tokens_after += n * record["tokens_after"]
            result.usd_spent += n * record["usd_spent"]
            result.usd_saved += n * record["usd_saved"]
    result.days = {name: n for name, n in zip(day_names, per_day) if n}
    return result
