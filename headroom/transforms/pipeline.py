"""The transform pipeline: one request body in, a smaller body (or None) and a receipt out.

Steps, each with one store round trip at most:

1. find tool outputs big enough to bother (``min_block_chars``);
2. look all of them up in the memo (one ``get_many``, which also fetches the prefix guard's
   records): a block seen before is re-sent exactly as it was the first time, whatever the
   question is now;
3. compress the new ones (detect → compressor) with the terms of the newest user question;
4. check every block sent against what was sent for it before (:mod:`prefix_guard`); store
   new memo entries and guard records and, where content was dropped, the originals for
   retrieval (one ``set_many``);
5. only if the request would not fit the model's window, drop the oldest whole turns.

The input body is never mutated; untouched parts of the new body are shared with it.
Failure is safe: a transform that raises leaves its block exactly as sent (and memoises it
so, counting the error in the receipt); any other error returns ``(None, receipt)`` with
``errors=1``, i.e. "forward the client's original bytes".
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from headroom.formats import Block, Format, named
from headroom.formats.base import TOOL_NAME
from headroom.savings import BlockSaving
from headroom.state.store import Store, StoreUnavailable
from headroom.transforms import accounting, ccr, envelope, memo, prefix_guard, tokens
from headroom.transforms.base import Brief, Compressed, Limits
from headroom.transforms.blocks import question_text
from headroom.transforms.detect import Kind
from headroom.transforms.fit import fit, input_budget
from headroom.transforms.memo import BlockId, MemoEntry, block_id
from headroom.transforms.prose_model import Candidate, ProseModel, ProseSettings, compress_prose
from headroom.transforms.router import compress_block
from headroom.transforms.terms import Terms, extract_terms

log = logging.getLogger("headroom.pipeline")

OFFLOAD_CHARS = 32_000  # blocks this big are tokenised (and zlib'd for CCR) off the event loop


@dataclass
class PipelineOptions:
    """Tuning knobs; the defaults suit coding agents (Claude Code, Codex-style tools)."""

    min_block_chars: int = 1_500  # smaller tool outputs are never worth rewriting
    lossy_min_chars: int = 6_000  # lossless output above this may drop items (with CCR)
    max_items: int = 40  # arrays / tables / file lists longer than this may be trimmed
    head_items: int = 5
    tail_items: int = 3
    max_anomalies: int = 25
    max_matches: int = 60
    head_lines: int = 15  # logs: lines always kept at the start and the end
    tail_lines: int = 15
    ccr_ttl: float = 24 * 3600.0  # seconds an original stays retrievable
    memo_ttl: float = 24 * 3600.0  # seconds a block's first compression is reused
    fit_context: bool = True  # drop oldest turns only when the window would overflow
    fit_keep_last_turns: int = 2
    fit_margin: float = 0.9  # o200k counts vs the provider's tokenizer
    fit_step_share: float = 0.1  # drop in steps of this share of the budget (cache-stable)
    # Exact o200k counts of new tool outputs (~6 ms/100 KB, on a worker thread). False:
    # character estimates instead, and receipts say estimated=True.
    exact_tokens: bool = True
    prose: ProseSettings = field(default_factory=ProseSettings)  # the model server, when there is one

    def limits(self) -> Limits:
        return Limits(
            lossy_min_chars=self.lossy_min_chars,
            max_items=self.max_items,
            head_items=self.head_items,
            tail_items=self.tail_items,
            max_anomalies=self.max_anomalies,
            max_matches=self.max_matches,
            head_lines=self.head_lines,
            tail_lines=self.tail_lines,
        )


@dataclass
class Receipt:
    """What the pipeline did to one request (token counts cover system, tools and messages)."""

    tokens_before: int = 0
    tokens_after: int = 0
    transforms: list[str] = field(default_factory=list)  # e.g. ["json:table", "fit:drop_turns=2"]
    ccr_keys: list[str] = field(default_factory=list)
    errors: int = 0
    dropped_turns: int = 0
    estimated: bool = False  # token counts are character estimates (no BPE available)
    blocks: int = 0  # tool outputs considered
    memo_hits: int = 0  # of which already seen on an earlier turn
    model_compressed: int = 0  # new blocks the model server compressed
    model_fallback: str | None = None  # why the model server did not ("timeout", "down", …)
    # Per tool output considered: tokens saved, memo hit, covering cache breakpoint (for dollars).
    block_savings: list[BlockSaving] = field(default_factory=list)
    # Blocks sent before with other bytes (prefix_guard): short ids of their originals. A bug.
    prefix_changes: list[str] = field(default_factory=list)

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    def add_transforms(self, names) -> None:
        for name in names:
            if name not in self.transforms:
                self.transforms.append(name)


# --- the cheap gate ------------------------------------------------------------------------


def needs_work(body: dict, fmt: Format | str, options: PipelineOptions | None = None) -> bool:
    """Whether any tool output is big enough to compress, or the window may overflow.

    Runs on every request, so it only looks at lengths: about a microsecond per message.
    Never raises; a malformed body is left to the provider to reject. ``fmt``: the body's
    format (or its name).
    """
    try:
        return _needs_work(body, named(fmt), options or _DEFAULT_OPTIONS)
    except Exception:  # noqa: BLE001
        return False


def _needs_work(body: dict, fmt: Format, opts: PipelineOptions) -> bool:
    if type(body) is not dict:
        return False
    if fmt.has_block(body, opts.min_block_chars):
        return True
    if not opts.fit_context or not fmt.fittable(body):
        return False
    # Fewer than 2 characters per token is rare: this practically never misses an overflow,
    # and a false alarm only costs one exact count in run_pipeline.
    return fmt.window_chars(body) / 2 > input_budget(body, fmt, opts.fit_margin)


_DEFAULT_OPTIONS = PipelineOptions()


# --- the pipeline --------------------------------------------------------------------------


async def run_pipeline(
    body: dict,
    fmt: Format | str,
    store: Store,
    caller: str,
    options: PipelineOptions | None = None,
    model: ProseModel | None = None,
) -> tuple[dict | None, Receipt]:
    """Compress ``body``; ``(None, receipt)`` means "forward the original bytes". Never raises.

    ``fmt``: the body's format (or its name). ``model``: the LLMLingua model server, for long
    prose tool outputs (see ``prose_model``).
    """
    opts = options or _DEFAULT_OPTIONS
    try:
        return await _run(body, named(fmt), store, caller, opts, model)
    except StoreUnavailable:  # counted by the store, warned about once per outage
        return None, Receipt(errors=1, estimated=tokens.is_estimate())
    except Exception:
        log.exception("headroom pipeline failed; forwarding the request unmodified")
        return None, Receipt(errors=1, estimated=tokens.is_estimate())


async def _run(body: dict, fmt: Format, store: Store, caller: str, opts: PipelineOptions,
               model: ProseModel | None):
    if not isinstance(body, dict):
        raise ValueError("the request body is not a JSON object")
    receipt = Receipt()
    # A retrieval result the proxy put in the conversation is what the model asked to see whole.
    blocks = [block for block in fmt.blocks(body, opts.min_block_chars) if block.tool_name != TOOL_NAME]
    entries: dict[tuple, MemoEntry] = {}
    hits: set[tuple] = set()
    if blocks:
        hits = await _compress_blocks(blocks, body, fmt, store, caller, opts, entries, receipt, model)
    new_texts = {path: e.output for path, e in entries.items() if e.output is not None}
    for block in blocks:
        entry = entries.get(block.path)
        if entry is not None:
            tokens.remember(block.text, entry.tokens_before)
            if entry.output is not None:
                tokens.remember(entry.output, entry.tokens_after)
    new_body = fmt.rewrite(body, new_texts) if new_texts else body
    if blocks:
        _note_savings(blocks, body, fmt, entries, hits, receipt)
    fixed = accounting.value_tokens(fmt.fixed_parts(body))
    before = accounting.message_tokens(fmt.conversation(body))
    after = accounting.message_tokens(fmt.conversation(new_body)) if new_texts else before
    receipt.tokens_before = fixed + sum(before)
    receipt.tokens_after = fixed + sum(after)
    if opts.fit_context:
        new_body = _fit(new_body, fmt, after, receipt, opts)
    receipt.estimated = receipt.estimated or tokens.is_estimate()
    changed = new_body is not body
    return (new_body if changed else None), receipt


def _note_savings(blocks: list[Block], body: dict, fmt: Format, entries: dict, hits: set,
                  receipt: Receipt) -> None:
    """Each block's figures for :mod:`headroom.savings` (and its covering cache breakpoint,
    in a format that has them)."""
    ttls = fmt.cache_ttls(body, [b.path for b in blocks])
    for block in blocks:
        entry = entries.get(block.path)
        saved = entry.tokens_before - entry.tokens_after if entry is not None and entry.output is not None else 0
        receipt.block_savings.append(BlockSaving(saved, block.path in hits, ttls.get(block.path)))


async def _compress_blocks(blocks: list[Block], body: dict, fmt: Format, store: Store, caller: str,
                           opts: PipelineOptions, entries: dict, receipt: Receipt, model: ProseModel | None) -> set:
    """Fill ``entries`` (path → memo entry) from the memo or by compressing; store new ones.
    Returns the paths found in the memo."""
    ids = [block_id(caller, b.text, b.tool_name, b.tool_input) for b in blocks]
    guard = prefix_guard.PrefixGuard(ids)
    found = await store.get_many([i.memo_key for i in ids] + guard.keys())  # one round trip for both
    guard.load(found[len(ids):])
    cached = found[:len(ids)]
    receipt.blocks = len(blocks)
    misses: list[tuple[Block, BlockId]] = []
    hits: set[tuple] = set()
    fresh: dict[str, MemoEntry] = {}  # identical blocks within one request compress once
    used: dict[str, Terms] = {}  # memo key → the terms it was compressed with just now
    for index, (block, bid, raw) in enumerate(zip(blocks, ids, cached)):
        entry = MemoEntry.from_bytes(raw) if raw is not None else None
        if entry is None:
            misses.append((block, bid))
            # Sent before but the memo entry is gone: compress it with the terms it was first
            # compressed with, so that the same bytes come back (prefix_guard).
            earlier = guard.terms_for(index)
            if earlier is not None:
                used[bid.memo_key] = earlier
            continue
        receipt.memo_hits += 1
        entries[block.path] = entry
        hits.add(block.path)
    terms: Terms | None = None
    ccr_items: dict[str, bytes] = {}
    # Exact BPE counts of big new blocks run on another core while this one compresses:
    # tiktoken releases the GIL, so the event loop is not held up by the count.
    loop = asyncio.get_running_loop()
    count = tokens.count_tokens if opts.exact_tokens else tokens.estimate_tokens
    if not opts.exact_tokens:
        receipt.estimated = True
    counts: dict[str, asyncio.Future] = {}
    for block, bid in misses:
        if opts.exact_tokens and len(block.text) >= OFFLOAD_CHARS and bid.memo_key not in counts:
            counts[bid.memo_key] = loop.run_in_executor(_executor(), tokens.count_tokens, block.text)
    try:
        # 1. the deterministic compressors decide each new block (identical blocks once)
        decided: dict[str, tuple[Block, BlockId, Compressed | None]] = {}
        candidates: list[Candidate] = []
        for block, bid in misses:
            if bid.memo_key in decided:
                continue
            if terms is None:
                terms = extract_terms(question_text(body, fmt))
            block_terms = used.setdefault(bid.memo_key, terms)
            # Prose too long for one model call is cut by the extractive compressor first;
            # what it keeps may then go to the model (``max_chars`` bounds the call).
            extract = model is None or len(block.text) > opts.prose.max_chars
            kind, result, failed = _transform(block, bid, block_terms, opts, extract)
            receipt.errors += failed
            decided[bid.memo_key] = (block, bid, result)
            if model is not None and kind is Kind.TEXT and not failed and len(block.text) >= opts.prose.min_chars:
                head, prose = envelope.split(result.text if result is not None else block.text)
                candidates.append(Candidate(bid.memo_key, prose, bid.ccr_key, head))
        # 2. long prose goes to the model server, all of this request's in one call
        if candidates:
            assert model is not None and terms is not None
            by_model, reason = await compress_prose(model, opts.prose, candidates, terms)
            receipt.model_fallback = reason
            for key, result in by_model.items():
                block, bid, _ = decided[key]
                if reason is not None:
                    decided[key] = (block, bid, None)  # as sent, and memoised so: later turns match
                elif result is not None:
                    decided[key] = (block, bid, result)
                    receipt.model_compressed += 1
        # 3. count tokens, keep originals for retrieval, make the memo entries
        for key, (block, bid, result) in decided.items():
            pending = counts.pop(key, None)
            before = await pending if pending is not None else count(block.text)
            after = None
            if result is not None:
                after = (await loop.run_in_executor(_executor(), count, result.text)
                         if len(result.text) >= OFFLOAD_CHARS else count(result.text))
            entry = _entry(result, before, after, bid)
            if entry.ccr_key:
                original = (await loop.run_in_executor(_executor(), ccr.encode_original, block.text)
                            if len(block.text) >= OFFLOAD_CHARS else ccr.encode_original(block.text))
                ccr_items[ccr.store_key(caller, bid.ccr_key)] = original
            fresh[key] = entry
        for block, bid in misses:
            entries[block.path] = fresh[bid.memo_key]
    finally:
        for pending in counts.values():  # only left over if something above raised
            pending.cancel()
    for entry in entries.values():
        if entry.output is not None:
            receipt.add_transforms(entry.transforms)
            if entry.ccr_key and entry.ccr_key not in receipt.ccr_keys:
                receipt.ccr_keys.append(entry.ccr_key)
    changed, records = guard.check([b.path for b in blocks], entries, used)
    receipt.prefix_changes.extend(changed)
    await _store(store, {**{k: e.to_bytes() for k, e in fresh.items()}, **records}, ccr_items, opts)
    return hits


def _transform(block: Block, bid: BlockId, terms: Terms, opts: PipelineOptions,
               extract_prose: bool = True) -> tuple[Kind | None, Compressed | None, int]:
    """(detected kind, compressor result or None, 1 if the transform raised else 0).

    A failing transform leaves its block exactly as the client sent it, and the memo keeps it
    that way on later turns (same bytes, so the provider's cache still hits).
    ``extract_prose`` off: the model server compresses long prose, so the text compressor
    only normalises whitespace (:mod:`prose` is what runs without a model).
    """
    limits = opts.limits()
    if not extract_prose:
        limits = replace(limits, extract_prose=False)
    brief = Brief(terms=terms, ccr_key=bid.ccr_key, limits=limits)
    try:
        kind, result = compress_block(block.text, block.tool_name, brief, block.tool_input)
    except Exception:
        log.exception("headroom transform failed on a %d-char block", len(block.text))
        return None, None, 1
    return kind, result, 0


def _entry(result, before: int, after: int | None, bid) -> MemoEntry:
    """The memo entry for a compression result; unchanged unless it saves tokens."""
    if result is None or after is None or after >= before:
        return MemoEntry(None, before, before)
    key = bid.ccr_key if result.omitted > 0 else None
    return MemoEntry(result.text, before, after, result.transforms, key)


def clear_process_caches() -> None:
    """Forget token counts and block digests remembered in this process (tests, benchmarks)."""
    tokens.clear_cache()
    memo.clear_digests()


_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="headroom-bpe")
    return _pool


async def _store(store: Store, memo_items: dict[str, bytes], ccr_items: dict[str, bytes],
                 opts: PipelineOptions) -> None:
    if not memo_items and not ccr_items:
        return
    if opts.memo_ttl == opts.ccr_ttl:
        await store.set_many({**ccr_items, **memo_items}, ttl=opts.memo_ttl)
        return
    if ccr_items:
        await store.set_many(ccr_items, ttl=opts.ccr_ttl)
    if memo_items:
        await store.set_many(memo_items, ttl=opts.memo_ttl)


def _fit(body: dict, fmt: Format, message_tokens: list[int], receipt: Receipt,
         opts: PipelineOptions) -> dict:
    """Drop the oldest whole turns when the request would not fit the model's window.

    Only where the format says the whole conversation is in the body (a Responses request
    with ``previous_response_id`` carries only the newest items, never the ones to drop)."""
    field = fmt.conversation_field
    if not fmt.fittable(body):
        return body
    budget = input_budget(body, fmt, opts.fit_margin)
    if receipt.tokens_after <= budget or not isinstance(body.get(field), list):
        return body
    step = max(1, int(budget * opts.fit_step_share))
    messages = body[field]
    result = fit(messages, message_tokens, receipt.tokens_after, budget, opts.fit_keep_last_turns, step, fmt)
    if result is None:
        return body
    receipt.dropped_turns = result.dropped_units
    receipt.tokens_after -= result.dropped_tokens
    receipt.add_transforms([f"fit:drop_turns={result.dropped_units}"])
    out = dict(body)
    out[field] = [messages[i] for i in result.keep]
    return out


__all__ = ["PipelineOptions", "Receipt", "needs_work", "run_pipeline"]
