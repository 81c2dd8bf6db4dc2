"""Prometheus metrics that add up across every worker, including dead and restarted ones.

Each Sanic worker is its own process, so an in-memory counter would only ever show the
figures of whichever worker happened to answer the scrape. prometheus-client's
multiprocess mode instead gives every process its own memory-mapped file in one shared
directory (``PROMETHEUS_MULTIPROC_DIR``); a scrape, served by any worker, reads and sums
all files. A worker that dies leaves its file behind, so its counts stay in the totals
and a restarted worker's counters never go backwards.

The CLI calls :func:`prepare_multiprocess_dir` once, in the main process, before workers
are started; they inherit the environment variable. Without it (one ASGI process) the
metrics live in memory and :func:`render` reports them from there.

prometheus-client is imported only when the first metric is created or rendered, so
importing this module costs nothing.

**A full disk under the metrics directory.** prometheus-client writes its values through
``mmap``: on a full file system (a full tmpfs ``/tmp`` above all) the first write to a page
not yet backed kills the process with ``SIGBUS``, which no ``try`` catches. So before this
process's metrics exist, :func:`reserve_files` allocates its files for real
(``posix_fallocate``, :data:`RESERVED_BYTES` each): pages in them can no longer fail. If
the space is not there, this process keeps its metrics in memory instead (one warning; its
figures are then missing from the shared totals) and serves on. A file only grows past the
reservation beyond some thousand series of one kind. Any other error a metric raises (an
``OSError`` when a file cannot grow) is caught by the functions below and warned about once:
metrics never fail a request.
"""

from __future__ import annotations

import atexit
import functools
import glob
import logging
import os
import shutil
import sys
import tempfile
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from headroom import formats
from headroom.observability.labels import BoundedLabel, upstream_error_kind

if TYPE_CHECKING:
    from headroom.outcome import RequestOutcome

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("headroom.observability")

#: Bytes allocated up front for each of a process's metric files: room for about 1,500
#: series of one kind (a value takes some 170 bytes), more than the bounded labels give.
RESERVED_BYTES = 256 * 1024
#: The files prometheus-client gives a process, ``{kind}_{pid}.db``, for the metric kinds used here.
FILE_KINDS = ("counter", "histogram", "gauge_mostrecent")
_INF = float("inf")

# Model names come from request bodies; a process gives its own series to at most this
# many, and only to names the upstream accepted (a 2xx answer). The rest read "other".
MODEL_LABEL_LIMIT = 50
PROVIDERS = formats.PROVIDERS  # the provider label of every format

# Milliseconds. Whole requests run from a few ms (cache hits) to minutes (long streams);
# the proxy's own overhead should stay in the low milliseconds.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000)
OVERHEAD_BUCKETS_MS = (0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000)
# The model server: one forward pass takes milliseconds (a short window on a GPU) to seconds
# (a full batch on a CPU); a batch holds 1 to 64 windows of at most 512 tokens.
INFERENCE_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
BATCH_WINDOW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
BATCH_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
MODEL_FALLBACK_REASONS = ("timeout", "down", "loading", "overloaded", "error")
# Tool names come from clients (the tool whose output was retrieved): at most this many per process.
TOOL_LABEL_LIMIT = 50
RETRIEVAL_OUTCOMES = ("ok", "miss", "error")


def prepare_multiprocess_dir(path: str | None = None) -> str:
    """Make an empty metrics directory and point ``PROMETHEUS_MULTIPROC_DIR`` at it.

    Call once in the main process before any worker starts. Files left by an earlier run
    are removed so its counts do not leak into this one (for Prometheus a proxy restart is
    a counter reset, which ``rate()`` handles). Without ``path`` a private temporary
    directory (mode 0700) is made and removed when this process exits.
    """
    if path is None:
        path = tempfile.mkdtemp(prefix="headroom-metrics-")
        owner = os.getpid()

        def remove() -> None:  # in this process only: a forked child inherits the registration
            if os.getpid() == owner:
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(remove)
    else:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    os.environ[ENV_VAR] = path
    sync_value_class()
    return path


def multiprocess_dir() -> str | None:
    """The shared metrics directory, or ``None`` in single-process mode."""
    return os.environ.get(ENV_VAR) or None


def sync_value_class() -> None:
    """Make prometheus-client's storage agree with ``PROMETHEUS_MULTIPROC_DIR`` right now.

    prometheus-client chooses file-backed or in-memory values once, when its ``values``
    module is first imported, and reads the directory itself only when a metric is
    created. If it was imported before the variable was set (or a test changed it), the
    choice is stale; fixing it before our metrics exist keeps them in the right place.
    """
    values: Any = sys.modules.get("prometheus_client.values")  # its ValueClass is set at run time
    if values is None:
        return  # not imported yet: it will read the environment when it is
    current = getattr(values.ValueClass, "_multiprocess", None)
    wanted = multiprocess_dir() is not None and not _files_unavailable
    if current is not None and current != wanted:
        values.ValueClass = values.MultiProcessValue() if wanted else values.MutexValue


def _prometheus() -> Any:
    import prometheus_client  # a dependency; imported on first use so that importing this module is free

    return prometheus_client


class Metrics:
    """Every Headroom metric, plus caches of labelled children so :meth:`observe` is cheap.

    Looking up a labelled child in prometheus-client takes a lock and builds a tuple; the
    proxy sees the same few (provider, model, status) combinations over and over, so the
    children are kept in plain dicts after the first lookup.
    """

    def __init__(self) -> None:
        sync_value_class()
        pc = _prometheus()
        self.registry = pc.CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return pc.Counter(name, doc, labels, registry=self.registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ("provider",)) -> Any:
            return pc.Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

        by_model = ("provider", "model")
        self.requests = counter("headroom_requests", "Requests answered", ("provider", "model", "status"))
        self.tokens_before = counter("headroom_tokens_before", "Prompt tokens before compression", by_model)
        self.tokens_after = counter("headroom_tokens_after", "Prompt tokens after compression", by_model)
        self.tokens_saved = counter("headroom_tokens_saved", "Prompt tokens removed by compression", by_model)
        self.tokens_input = counter("headroom_tokens_input", "Input tokens as reported by the upstream", by_model)
        self.tokens_output = counter("headroom_tokens_output", "Output tokens as reported by the upstream", by_model)
        self.cache_read = counter(
            "headroom_prompt_cache_read_tokens", "Provider prompt-cache read tokens, as reported", by_model
        )
        self.cache_write = counter(
            "headroom_prompt_cache_write_tokens", "Provider prompt-cache write tokens, as reported", by_model
        )
        self.cost = counter("headroom_cost_usd", "Cost in USD of the upstream usage", by_model)
        self.usd_spent = counter("headroom_usd_spent", "USD spent: the cost of the upstream usage", by_model)
        self.usd_saved = counter(
            "headroom_usd_saved", "USD saved by compression, priced at the cache-aware rate (an estimate)", by_model
        )
        self.cache_hits = counter("headroom_cache_hits", "Requests answered from Headroom's response cache")
        self.cache_misses = counter("headroom_cache_misses", "Cacheable requests not found in the response cache")
        self.rate_limited = counter("headroom_rate_limited", "Requests rejected by a rate limit or budget", ("reason",))
        self.upstream_errors = counter("headroom_upstream_errors", "Requests the upstream failed", ("kind",))
        self.compression_failures = counter(
            "headroom_compression_failed", "Requests forwarded uncompressed because compression failed"
        )
        self.prefix_changes = counter(
            "headroom_prefix_changes", "Tool outputs sent on an earlier turn that Headroom re-sent with different "
            "bytes (a prompt-cache break it caused; should stay 0)", ("provider",))
        for provider in PROVIDERS:
            self.prefix_changes.labels(provider)
        self.retrievals = counter(
            "headroom_retrievals", "Retrievals of originals compression left out, by the tool whose output it was "
            "and outcome (ok, miss: unknown/expired/another caller's, error: store down)", ("tool", "outcome"))
        self.retrieved_tokens = counter(
            "headroom_retrieved_tokens", "Tokens given back to the model by retrievals (savings are net of them)",
            ("tool",))
        self.backoffs = counter(
            "headroom_retrieval_backoffs", "Times a tool's outputs were retrieved so often that its new outputs went "
            "lossless for a caller (--retrieval-backoff)", ("tool",))
        self.store_outages = counter("headroom_store_unavailable", "Operations that found the shared store unavailable")
        self.request_log_lost = counter(
            "headroom_request_log_lines_lost", "Request log lines dropped because the file could not take them whole")
        # LLMLingua: what the workers saw, and (written by the model server process) its queue and batches.
        self.model_compressions = counter("headroom_llmlingua_compressions", "Tool outputs compressed by LLMLingua")
        self.model_fallbacks = counter(
            "headroom_llmlingua_fallbacks", "Requests whose prose went uncompressed because the model server could not "
            "answer in time", ("reason",))
        for reason in MODEL_FALLBACK_REASONS:
            self.model_fallbacks.labels(reason)
        self.model_queue = pc.Gauge("headroom_model_server_queue_windows", "Windows waiting for the model",
                                    registry=self.registry, multiprocess_mode="mostrecent")
        self.model_batch_windows = histogram("headroom_model_server_batch_windows", "Windows per forward pass",
                                             BATCH_WINDOW_BUCKETS, ())
        self.model_batch_tokens = histogram("headroom_model_server_batch_tokens",
                                            "Padded tokens per forward pass (windows x longest)",
                                            BATCH_TOKEN_BUCKETS, ())
        self.model_inference = histogram("headroom_model_server_inference_ms", "Time of one forward pass in ms",
                                         INFERENCE_BUCKETS_MS, ())

        self.latency = histogram("headroom_latency_ms", "Whole request time in ms", LATENCY_BUCKETS_MS)
        self.overhead = histogram("headroom_overhead_ms", "Time Headroom itself added in ms", OVERHEAD_BUCKETS_MS)
        self.ttfb = histogram("headroom_ttfb_ms", "Time to the first byte of a stream in ms", LATENCY_BUCKETS_MS)
        self._budget_remaining: Any = None  # made on the first reading: no budget, no series

        self._provider = BoundedLabel(0, PROVIDERS)
        self._model = BoundedLabel(MODEL_LABEL_LIMIT)
        self._reason = BoundedLabel(8, ("rpm", "tpm", "budget"))
        self._kind = BoundedLabel(32)
        self._tool = BoundedLabel(TOOL_LABEL_LIMIT)
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._model_children: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._provider_children: dict[str, tuple[Any, Any, Any]] = {}

    def _for_model(self, provider: str, model: str) -> tuple[Any, ...]:
        key = (provider, model)
        children = self._model_children.get(key)
        if children is None:
            children = self._model_children[key] = tuple(
                metric.labels(provider, model)
                for metric in (
                    self.tokens_before, self.tokens_after, self.tokens_saved, self.tokens_input,
                    self.tokens_output, self.cache_read, self.cache_write, self.cost,
                    self.usd_spent, self.usd_saved,
                )
            )
        return children

    def _for_provider(self, provider: str) -> tuple[Any, Any, Any]:
        children = self._provider_children.get(provider)
        if children is None:
            children = self._provider_children[provider] = (
                self.latency.labels(provider), self.overhead.labels(provider), self.ttfb.labels(provider)
            )
        return children

    def observe(self, outcome: RequestOutcome) -> None:
        """Count one finished request."""
        self.observe_all((outcome,))

    def observe_all(self, outcomes: Iterable[RequestOutcome]) -> None:
        """Count finished requests, writing each series they touch once.

        Every write to a series costs a lock, a process-id check and a write to the
        memory-mapped file; the proxy closes the books on all the requests answered in one
        turn of its event loop together (15 to 20 at 64 connections on 2 cores), so adding
        their figures up first saves most of them. Zero amounts are skipped: they would
        not change a sum.
        """
        adds: dict[Any, float] = {}  # counter child -> amount to add
        observed: dict[Any, list[float]] = {}  # histogram child -> values to observe
        for outcome in outcomes:
            self._tally(outcome, adds, observed)
        for counter, amount in adds.items():
            counter.inc(amount)
        for histogram, values in observed.items():
            observe_values(histogram, values)

    def _tally(self, outcome: RequestOutcome, adds: dict[Any, float], observed: dict[Any, list[float]]) -> None:
        get = adds.get
        provider = self._provider(outcome.provider)
        model = self._model(outcome.model, admit=200 <= outcome.status < 300)
        key = (provider, model, outcome.status)
        request = self._request_children.get(key)
        if request is None:
            request = self._request_children[key] = self.requests.labels(provider, model, str(outcome.status))
        adds[request] = get(request, 0) + 1

        before, after, saved, inp, out, c_read, c_write, cost, usd_spent, usd_saved = self._for_model(provider, model)
        for counter, amount in (
            (before, outcome.tokens_before),
            (after, outcome.tokens_after),
            (saved, outcome.tokens_before - outcome.tokens_after),  # grown: none saved (a counter cannot go down)
            (inp, outcome.input_tokens),
            (out, outcome.output_tokens),
            (c_read, outcome.cache_read_tokens),
            (c_write, outcome.cache_write_tokens),
        ):
            if amount > 0:
                adds[counter] = get(counter, 0) + amount
        if 0 < outcome.cost_usd < _INF:  # a NaN or inf would poison the sum for good
            adds[cost] = get(cost, 0) + outcome.cost_usd
            adds[usd_spent] = get(usd_spent, 0) + outcome.cost_usd
        if 0 < outcome.usd_saved < _INF:
            adds[usd_saved] = get(usd_saved, 0) + outcome.usd_saved
        if outcome.prefix_changes:
            counter = self.prefix_changes.labels(provider)
            adds[counter] = get(counter, 0) + outcome.prefix_changes

        latency, overhead, ttfb = self._for_provider(provider)
        observed.setdefault(latency, []).append(outcome.latency_ms)
        observed.setdefault(overhead, []).append(outcome.overhead_ms)
        if outcome.ttfb_ms is not None:
            observed.setdefault(ttfb, []).append(outcome.ttfb_ms)

        counter = None
        if outcome.cache == "hit":
            counter = self.cache_hits
        elif outcome.cache == "miss":
            counter = self.cache_misses
        if counter is not None:
            adds[counter] = get(counter, 0) + 1
        if outcome.limited:
            counter = self.rate_limited.labels(self._reason(outcome.limited))
            adds[counter] = get(counter, 0) + 1
        kind = upstream_error_kind(outcome.error)
        if kind:
            counter = self.upstream_errors.labels(self._kind(kind))
            adds[counter] = get(counter, 0) + 1

    def tool_label(self, tool: str) -> str:
        return self._tool(tool)

    def observe_retrieval(self, tool: str, outcome: str, tokens: int) -> None:
        label = self._tool(tool)
        self.retrievals.labels(label, outcome if outcome in RETRIEVAL_OUTCOMES else "error").inc()
        if tokens > 0:
            self.retrieved_tokens.labels(label).inc(tokens)

    def set_budget_remaining(self, usd: float | None) -> None:
        """Record the budget left; ``None`` (no budget configured) leaves the gauge as it was.

        Budget remaining is one shared fact (from the store) that each worker learns at its
        own moments: the latest reading wins, and it stays true after the worker that read
        it has died, hence ``mostrecent`` rather than ``livemostrecent``, ``sum`` or ``max``.
        """
        if usd is None:
            return
        if self._budget_remaining is None:
            self._budget_remaining = _prometheus().Gauge(
                "headroom_budget_remaining_usd", "Budget left in the current period, USD",
                multiprocess_mode="mostrecent", registry=self.registry,
            )
        self._budget_remaining.set(usd)


def observe_values(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each of ``values``, with each bucket and the sum written
    once: the counts and the sum come out as ``observe`` would make them (the sum up to
    floating-point rounding). Reads prometheus-client's ``Histogram`` internals
    (``_upper_bounds``, ``_buckets``, ``_sum``, stable since its first releases); without
    them, observes one value at a time."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if len(values) == 1 or bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        i = bisect_left(bounds, value)  # the first bound >= value: observe's "value <= bound"
        if i < len(bounds) and value <= bounds[i]:  # a NaN falls in no bucket, as with observe
            counts[i] += 1
    total.inc(sum(values))
    for bucket, count in zip(buckets, counts):
        if count:
            bucket.inc(count)


def reserve_files(path: str, pid: int | None = None, size: int = RESERVED_BYTES) -> None:
    """Allocate this process's metric files in ``path`` before prometheus-client maps them.

    prometheus-client takes a file that exists as it is (its size is the capacity; a zeroed
    header reads as empty) and only makes a sparse one itself. Raises ``OSError`` (with the
    files it made removed again) when the space is not there.
    """
    pid = os.getpid() if pid is None else pid
    made: list[str] = []
    try:
        for kind in FILE_KINDS:
            name = os.path.join(path, f"{kind}_{pid}.db")
            fd = os.open(name, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                if os.fstat(fd).st_size == 0:
                    made.append(name)
                    os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
    except OSError:
        for name in made:
            try:
                os.remove(name)
            except OSError:
                pass
        raise


_files_unavailable = False  # this process could not reserve its files: its metrics stay in memory


def _in_memory_instead(exc: OSError) -> None:
    """Fail open: this process keeps its metrics in memory (see the module docstring)."""
    global _files_unavailable
    _files_unavailable = True
    log.warning("metrics directory %s: no room for this process's files (%s); its metrics are kept in memory "
                "and left out of the shared totals at /metrics", multiprocess_dir(), exc)
    values: Any = sys.modules.get("prometheus_client.values") or _prometheus().values
    values.ValueClass = values.MutexValue


_metrics: Metrics | None = None


def get_metrics() -> Metrics:
    """This process's metrics, created on first use.

    Calling it when a worker starts makes the unlabelled counters appear (at 0) from the
    very first scrape instead of after the first request.
    """
    global _metrics
    if _metrics is None:
        sync_value_class()
        path = multiprocess_dir()
        if path:
            try:
                reserve_files(path)
            except OSError as exc:
                _in_memory_instead(exc)
        _metrics = Metrics()
    return _metrics


_failures = 0


def fail_open(func):
    """Metrics never fail what they count: an error is logged once per process, then only counted."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _failures
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            _failures += 1
            if _failures == 1:
                log.warning("metrics: %s failed (%s: %s); further failures are not logged", func.__name__,
                            type(exc).__name__, exc)
            return None

    return wrapper


@fail_open
def observe(outcome: RequestOutcome) -> None:
    get_metrics().observe(outcome)


@fail_open
def observe_all(outcomes: Iterable[RequestOutcome]) -> None:
    """:meth:`Metrics.observe_all`: the proxy's requests, a turn of its event loop at a time."""
    get_metrics().observe_all(outcomes)


@fail_open
def set_budget_remaining(usd: float | None) -> None:
    get_metrics().set_budget_remaining(usd)


@fail_open
def compression_failed() -> None:
    get_metrics().compression_failures.inc()


@fail_open
def model_compressed(blocks: int) -> None:
    get_metrics().model_compressions.inc(blocks)


@fail_open
def model_fallback(reason: str) -> None:
    get_metrics().model_fallbacks.labels(reason if reason in MODEL_FALLBACK_REASONS else "error").inc()


@fail_open
def model_batch(windows: int, padded_tokens: int, seconds: float, queue_windows: int) -> None:
    """The model server, after each forward pass."""
    m = get_metrics()
    m.model_batch_windows.observe(windows)
    m.model_batch_tokens.observe(padded_tokens)
    m.model_inference.observe(seconds * 1000.0)
    m.model_queue.set(queue_windows)


@fail_open
def model_queue(queue_windows: int) -> None:
    get_metrics().model_queue.set(queue_windows)


@fail_open
def retrieval(tool: str, outcome: str, tokens: int) -> None:
    """One retrieval the proxy answered (``headroom.transforms.retrieval_policy``)."""
    get_metrics().observe_retrieval(tool, outcome, tokens)


@fail_open
def backoff_started(tool: str) -> None:
    get_metrics().backoffs.labels(get_metrics().tool_label(tool)).inc()


@fail_open
def store_unavailable() -> None:
    get_metrics().store_outages.inc()


@fail_open
def request_log_line_lost() -> None:
    get_metrics().request_log_lost.inc()


def mark_worker_dead(pid: int) -> None:
    """Supervisor hook: drop a dead worker's ``live*`` gauges; its counters stay counted.

    No Headroom gauge uses a ``live*`` mode today, so this is bookkeeping that keeps the
    totals right if one is added; it is cheap and safe to call for every exited worker.
    """
    path = multiprocess_dir()
    if path:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, path)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type, summed over every process's file.

    Works in any worker (it only reads the shared directory). In single-process mode it
    reports this process's in-memory metrics.
    """
    pc = _prometheus()
    path = multiprocess_dir()
    if path:
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = pc.CollectorRegistry()
        MultiProcessCollector(registry, path=path)
    else:
        registry = get_metrics().registry
    return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST
