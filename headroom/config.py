"""One typed configuration for the proxy.

Every option is declared once, in :data:`OPTIONS`; the CLI flags, the ``HEADROOM_*``
environment variables and the README's option table are all derived from that list.
Precedence is defaults < environment < command-line flags.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

BudgetPeriod = Literal["hourly", "daily", "monthly"]  # UTC periods
BudgetScope = Literal["global", "key"]  # one budget for everyone, or one per API key
Switch = Literal["on", "off"]

ANTHROPIC_API_URL = "https://api.anthropic.com"
LLMLINGUA_MODEL = "microsoft/llmlingua-2-bert-base-multilingual-cased-meetingbank"
OPENAI_API_URL = "https://api.openai.com"
GEMINI_API_URL = "https://generativelanguage.googleapis.com"


@dataclass(frozen=True)
class ProxyConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    optimize: bool = True
    cache: bool = True
    rate_limit: bool = True
    log_file: str | None = None
    log_messages: bool = False
    admin_token: str | None = None
    redis_url: str | None = None
    redis_timeout: float = 1.0
    state_secret: str | None = None
    fail_closed: bool = False
    ccr_ttl: float = 86_400.0
    retrieval_backoff: float = 0.2
    retrieval_tool: Switch = "on"
    max_retrievals: int = 3
    cache_ttl: float = 300.0
    cache_max_entries: int = 10_000
    rpm: int = 600
    tpm: int = 5_000_000
    budget: float | None = None
    budget_period: BudgetPeriod = "daily"
    budget_scope: BudgetScope = "global"
    pricing_file: str | None = None
    llmlingua: bool = False
    llmlingua_device: str = "auto"
    llmlingua_rate: float = 0.3
    llmlingua_model: str = LLMLINGUA_MODEL
    llmlingua_backend: str = "auto"
    llmlingua_timeout_ms: int = 6000  # 8 KB of prose: p95 5.2 s, one thread on a loaded 2-core CPU
    model_server_url: str | None = None
    model_server_token: str | None = None
    anthropic_api_url: str = ANTHROPIC_API_URL
    openai_api_url: str = OPENAI_API_URL
    gemini_api_url: str = GEMINI_API_URL
    request_timeout: float = 600.0
    connect_timeout: float = 10.0
    shutdown_grace: float = 20.0
    client_timeout: float = 60.0
    max_connections: int = 4096
    keep_alive_timeout: float = 75.0
    max_body_mb: float = 32.0
    max_inflight_mb: float = 128.0
    max_response_mb: float = 64.0
    store_max_mb: float = 128.0

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_inflight_bytes(self) -> int:
        return int(self.max_inflight_mb * 1024 * 1024)

    @property
    def max_response_bytes(self) -> int:
        return int(self.max_response_mb * 1024 * 1024)

    @property
    def store_max_bytes(self) -> int:
        return int(self.store_max_mb * 1024 * 1024)

    @property
    def loopback_only(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


@dataclass(frozen=True)
class Option:
    """One configurable setting: its field, flag, environment variable and help text."""

    field: str
    flag: str
    env: str
    help: str
    parse: Callable[[str], Any] = str
    #: ``"store_false"`` for ``--no-x`` switches, ``"store_true"`` for ``--x`` switches.
    switch: str | None = None
    choices: tuple[str, ...] | None = None
    #: masked wherever the configuration is shown (``--print-config``)
    secret: bool = False

    def shown(self, raw: str) -> str:
        """``raw`` as an error message may repeat it: a secret never; a URL without its user
        info or its query (either may carry a key: ``user:pw@``, Gemini's ``?key=``)."""
        if self.secret:
            return "***"
        scheme, sep, rest = raw.partition("://")
        if not sep:
            return raw
        rest, query, _ = rest.partition("?")
        authority = rest.split("/", 1)[0].split("#", 1)[0]
        if "@" in authority:
            rest = "***@" + rest[authority.rindex("@") + 1:]
        return f"{scheme}://{rest}{'?***' if query else ''}"


def upstream_url(text: str) -> str:
    """An upstream's base URL: http or https, a host, and nothing the request's own path and
    query could not follow (the proxy sends ``base + path + ?query``).

    Why checked here: the upstream client refuses anything else on every request, so such a
    setting would start a proxy that fails each call with a 502; user info is refused rather
    than sent as basic auth (the clients' own ``Authorization`` or key header is what
    providers read, and the two cannot both be sent)."""
    url = text.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("not a URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("an upstream URL starts with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError("user info (user:password@) in an upstream URL is not supported: "
                         "the client's own key header is sent")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0:
        raise ValueError("an upstream URL names a host, and a port (if any) from 1 to 65535")
    if "?" in url or "#" in url:  # a query or a fragment, even an empty one
        raise ValueError("an upstream base URL has no query or fragment (each request's own are added)")
    return url


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class Number:
    """A numeric setting's parser: a whole number (``int``) or a decimal one, within its real range.

    NaN and infinity are never in range (``float()`` accepts them, and ``nan <= 0`` is false, so a
    plain sign check let them through: a NaN timeout failed every request, an infinite body limit
    killed the worker). The message says the range, which is the fix.
    """

    kind: type[int] | type[float]
    low: float
    high: float
    #: ``low`` itself is not allowed (``0 < value``)
    above: bool = False
    unit: str = ""

    def describe(self) -> str:
        noun = "a whole number" if self.kind is int else "a number"
        low = f"above {_plain(self.low)}" if self.above else f"from {_plain(self.low)}"
        unit = f" ({self.unit})" if self.unit else ""
        return f"{noun} {low} {'and at most' if self.above else 'to'} {_plain(self.high)}{unit}"

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text.strip())
        except ValueError:
            raise ValueError(f"not {self.describe()}") from None
        fits = value > self.low if self.above else value >= self.low
        if not (math.isfinite(value) and fits and value <= self.high):
            raise ValueError(f"must be {self.describe()}")
        return value


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


#: 0 (an ephemeral port) is refused: clients must be able to find a proxy.
PORT = Number(int, 1, 65_535)
DAY = 86_400.0
#: every timeout: positive, finite, at most a day
SECONDS = Number(float, 0, DAY, above=True, unit="seconds")
#: how long stored things live: at most a year (Redis expiries stay well in range)
TTL = Number(float, 0, 365 * DAY, above=True, unit="seconds")
#: sizes in MiB: at most 1 TiB, so ``* 1024 * 1024`` stays a sane int; at least about 1 KiB
MIB = Number(float, 0.001, 1_048_576, unit="MiB")
COUNT = Number(int, 1, 100_000_000)


SHARE = Number(float, 0, 1, above=True)


OPTIONS: tuple[Option, ...] = (
    Option("host", "--host", "HEADROOM_HOST", "address to bind"),
    Option("port", "--port", "HEADROOM_PORT", "port to listen on", PORT),
    Option("workers", "--workers", "HEADROOM_WORKERS", "worker processes", Number(int, 1, 256)),
    Option(
        "optimize", "--no-optimize", "HEADROOM_OPTIMIZE",
        "turn the compression pipeline off (forward everything unchanged)", parse_bool, "store_false",
    ),
    Option("ccr_ttl", "--ccr-ttl", "HEADROOM_CCR_TTL",
           "seconds an original left out by compression stays retrievable (/v1/retrieve)", TTL),
    Option("retrieval_backoff", "--retrieval-backoff", "HEADROOM_RETRIEVAL_BACKOFF",
           "when the model retrieves more than this share of a tool's lossily compressed outputs (over at least "
           "10), that tool's new outputs get only lossless transforms for the caller for an hour (0: never)",
           Number(float, 0, 100)),
    Option("retrieval_tool", "--retrieval-tool", "HEADROOM_RETRIEVAL_TOOL",
           "declare the headroom_retrieve tool on every request that already carries tools (compression on), "
           "and answer the model's calls to it inside the proxy; off: the tool list goes upstream as sent",
           choices=get_args(Switch)),
    Option("max_retrievals", "--max-retrievals", "HEADROOM_MAX_RETRIEVALS",
           "retrieval rounds per client request; then the upstream is asked to answer without calling a tool",
           Number(int, 1, 100)),
    Option("cache", "--no-cache", "HEADROOM_CACHE", "turn the response cache off", parse_bool, "store_false"),
    Option("cache_ttl", "--cache-ttl", "HEADROOM_CACHE_TTL", "seconds a cached response is served", TTL),
    Option("cache_max_entries", "--cache-max-entries", "HEADROOM_CACHE_MAX_ENTRIES",
           "cached responses kept (least recently used go first)", COUNT),
    Option("rate_limit", "--no-rate-limit", "HEADROOM_RATE_LIMIT", "turn rate limiting off", parse_bool,
           "store_false"),
    Option("rpm", "--rpm", "HEADROOM_RPM",
           "requests per minute per API key; a full minute's worth may arrive at once (0: no limit)",
           Number(int, 0, 1_000_000_000)),
    Option("tpm", "--tpm", "HEADROOM_TPM", "input tokens per minute per API key, bursts allowed (0: no limit)",
           Number(int, 0, 10**12)),
    Option("log_file", "--log-file", "HEADROOM_LOG_FILE", "append one JSON line per request to this file"),
    Option("log_messages", "--log-messages", "HEADROOM_LOG_MESSAGES",
           "also write the request's messages into the log file (off: no content is ever logged)", parse_bool,
           "store_true"),
    Option("admin_token", "--admin-token", "HEADROOM_ADMIN_TOKEN",
           "token required for /stats, /metrics, /v1/retrieve and the OpenAPI description", secret=True),
    Option("budget", "--budget", "HEADROOM_BUDGET", "spend limit in USD per budget period",
           Number(float, 0, 1e9, above=True, unit="USD")),
    Option("budget_period", "--budget-period", "HEADROOM_BUDGET_PERIOD", "budget period, in UTC",
           choices=get_args(BudgetPeriod)),
    Option("budget_scope", "--budget-scope", "HEADROOM_BUDGET_SCOPE",
           "one budget shared by everyone, or one per API key", choices=get_args(BudgetScope)),
    Option("pricing_file", "--pricing-file", "HEADROOM_PRICING_FILE",
           "JSON file of model prices merged over the built-in table"),
    Option("redis_url", "--redis-url", "HEADROOM_REDIS_URL",
           "shared state in this Redis (redis://, rediss://, unix://, or through Sentinel: "
           "redis+sentinel://[[user]:password@]host:26379[,host:26379…]/master-name[/db][?sentinel_password=…], "
           "rediss+sentinel:// with TLS); default: in memory for one worker, a private redis-server for several"),
    Option("redis_timeout", "--redis-timeout", "HEADROOM_REDIS_TIMEOUT",
           "seconds a Redis call may take before the request goes on without it", SECONDS),
    Option("state_secret", "--state-secret", "HEADROOM_STATE_SECRET",
           "secret for hashing API keys into state keys; same on every instance (default: kept in Redis)",
           secret=True),
    Option("fail_closed", "--fail-closed", "HEADROOM_FAIL_CLOSED",
           "reject requests with 503 while shared state is unreachable (default: forward them unguarded)",
           parse_bool, "store_true"),
    Option("llmlingua", "--llmlingua", "HEADROOM_LLMLINGUA",
           "compress long prose tool outputs with LLMLingua-2 in a model server (pip install headroom-ai[llmlingua])",
           parse_bool, "store_true"),
    Option("llmlingua_device", "--llmlingua-device", "HEADROOM_LLMLINGUA_DEVICE",
           "device for the LLMLingua model; auto: cuda, then mps, then cpu", choices=("auto", "cuda", "cpu", "mps")),
    Option("llmlingua_rate", "--llmlingua-rate", "HEADROOM_LLMLINGUA_RATE",
           "share of tokens LLMLingua keeps (0.3 keeps 30%)", SHARE),
    Option("llmlingua_model", "--llmlingua-model", "HEADROOM_LLMLINGUA_MODEL",
           "LLMLingua-2 model: a hub name or a local folder"),
    Option("llmlingua_backend", "--llmlingua-backend", "HEADROOM_LLMLINGUA_BACKEND",
           "auto: ONNX Runtime on the CPU when an exported model is found (headroom llmlingua export), "
           "torch otherwise and on GPUs", choices=("auto", "torch", "onnx", "onnx-int8")),
    Option("llmlingua_timeout_ms", "--llmlingua-timeout-ms", "HEADROOM_LLMLINGUA_TIMEOUT_MS",
           "the most a request waits for the model; then it goes on uncompressed",
           Number(int, 1, int(DAY * 1000), unit="ms")),
    Option("model_server_url", "--model-server-url", "HEADROOM_MODEL_SERVER_URL",
           "use a running model server (unix:///path or tcp://host:port, see headroom model-server) "
           "instead of starting one"),
    Option("model_server_token", "--model-server-token", "HEADROOM_MODEL_SERVER_TOKEN",
           "shared token for a model server on TCP", secret=True),
    Option("anthropic_api_url", "--anthropic-api-url", "ANTHROPIC_TARGET_API_URL", "Anthropic upstream base URL",
           upstream_url),
    Option("openai_api_url", "--openai-api-url", "OPENAI_TARGET_API_URL", "OpenAI upstream base URL", upstream_url),
    Option("gemini_api_url", "--gemini-api-url", "GEMINI_TARGET_API_URL", "Google Gemini upstream base URL",
           upstream_url),
    Option("request_timeout", "--request-timeout", "HEADROOM_REQUEST_TIMEOUT",
           "seconds an upstream may stay silent (before headers, or between stream chunks)", SECONDS),
    Option("connect_timeout", "--connect-timeout", "HEADROOM_CONNECT_TIMEOUT",
           "seconds to open an upstream connection", SECONDS),
    Option("client_timeout", "--client-timeout", "HEADROOM_CLIENT_TIMEOUT",
           "seconds a client may take to send a whole request (a trickled body, or a connection that "
           "never sends one, is closed after it)", SECONDS),
    Option("max_connections", "--max-connections", "HEADROOM_MAX_CONNECTIONS",
           "open client connections per worker; beyond them a new one gets a 503 with retry-after and is "
           "closed (keep it under the file-descriptor limit)", Number(int, 1, 1_000_000)),
    Option("keep_alive_timeout", "--keep-alive-timeout", "HEADROOM_KEEP_ALIVE_TIMEOUT",
           "seconds an idle keep-alive connection stays open (keep it above your load balancer's idle "
           "timeout)", SECONDS),
    Option("shutdown_grace", "--shutdown-grace", "HEADROOM_SHUTDOWN_GRACE",
           "on SIGTERM, seconds in-flight requests and streams get to finish before they are cut "
           "(keep it under your orchestrator's own grace period: Kubernetes gives 30 s)", SECONDS),
    Option("max_body_mb", "--max-body-mb", "HEADROOM_MAX_BODY_MB", "largest request body accepted, in MiB", MIB),
    Option("max_inflight_mb", "--max-inflight-mb", "HEADROOM_MAX_INFLIGHT_MB",
           "request bytes one worker holds at once; beyond them requests get a 429 with retry-after "
           "(one request alone is always accepted)", MIB),
    Option("max_response_mb", "--max-response-mb", "HEADROOM_MAX_RESPONSE_MB",
           "largest non-streamed upstream answer relayed, in MiB once decompressed (beyond it: 502)", MIB),
    Option("store_max_mb", "--store-max-mb", "HEADROOM_STORE_MAX_MB",
           "memory for stored state, in MiB: cached answers, memoised blocks and originals, least recently "
           "used evicted first (never rate-limit, budget or identity state); the in-memory store and the "
           "private redis-server of --workers N keep to it", MIB),
)


class ConfigError(ValueError):
    """A setting could not be understood; the message names the setting."""


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    for key in [key for key in values if key.endswith("_api_url")]:  # every format's upstream
        if key in values:
            url = str(values[key]).rstrip("/")
            # Accept both ".../v1" and the bare base: routes always add "/v1/...".
            values[key] = url[: -len("/v1")] if url.endswith("/v1") else url
    return values


def from_env(environ: Mapping[str, str], options: tuple[Option, ...] = OPTIONS) -> dict[str, Any]:
    """Settings given by environment variables, parsed and checked."""
    values: dict[str, Any] = {}
    for option in options:
        raw = environ.get(option.env)
        if raw is None or raw == "":
            continue
        given = f"{option.env}={option.shown(raw)!r}"  # secrets never in messages
        try:
            value = option.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{given}: {exc}") from None
        if option.choices and value not in option.choices:
            raise ConfigError(f"{given}: choose one of {', '.join(option.choices)}")
        values[option.field] = value
    return values


def build_config(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Merge defaults < environment < flags into one :class:`ProxyConfig`.

    ``flags`` holds only what was given on the command line (absent means "not given").
    """
    values = from_env(os.environ if environ is None else environ)
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    return ProxyConfig(**_normalise(values))


@dataclass(frozen=True)
class ModelServerConfig:
    """``headroom model-server``: the LLMLingua model server on its own (ASGI deployments, or
    one GPU host serving the proxies of many hosts)."""

    socket: str | None = None
    host: str = "127.0.0.1"
    port: int = 8788
    token: str | None = None
    llmlingua_model: str = LLMLINGUA_MODEL
    llmlingua_device: str = "auto"
    llmlingua_backend: str = "auto"
    max_batch_tokens: int | None = None  # 1024 on a CPU, 8192 on a GPU
    max_queue_windows: int = 256
    threads: int | None = None
    metrics_port: int | None = None


_PROXY_OPTION = {option.field: option for option in OPTIONS}

MODEL_SERVER_OPTIONS: tuple[Option, ...] = (
    Option("socket", "--socket", "HEADROOM_MODEL_SERVER_SOCKET",
           "listen on this Unix socket (mode 0600) instead of TCP"),
    Option("host", "--host", "HEADROOM_MODEL_SERVER_HOST", "TCP address to bind (with --token beyond loopback)"),
    Option("port", "--port", "HEADROOM_MODEL_SERVER_PORT", "TCP port", PORT),
    Option("token", "--token", "HEADROOM_MODEL_SERVER_TOKEN",
           "shared token every TCP client must present (proxies: --model-server-token)", secret=True),
    _PROXY_OPTION["llmlingua_model"],
    _PROXY_OPTION["llmlingua_device"],
    _PROXY_OPTION["llmlingua_backend"],
    Option("max_batch_tokens", "--max-batch-tokens", "HEADROOM_MODEL_SERVER_MAX_BATCH_TOKENS",
           "padded tokens in one forward pass (longest window x windows; default 1024 on a CPU, 8192 on a GPU: "
           "a pass cannot be interrupted, so smaller passes let short requests through sooner)",
           Number(int, 1, 1_000_000)),
    Option("max_queue_windows", "--max-queue-windows", "HEADROOM_MODEL_SERVER_MAX_QUEUE_WINDOWS",
           "windows waiting for the model; beyond them a request is answered \"overloaded\" at once "
           "(and goes on uncompressed)", Number(int, 1, 1_000_000)),
    Option("threads", "--threads", "HEADROOM_MODEL_SERVER_THREADS",
           "threads for the model (default on a CPU: cores - 1, so that a short request's pass is not kept waiting "
           "behind a long one's; on a GPU the backend's choice)", Number(int, 1, 1024)),
    Option("metrics_port", "--metrics-port", "HEADROOM_MODEL_SERVER_METRICS_PORT",
           "serve Prometheus metrics (queue, batch sizes, forward-pass time) on this port, same address as "
           "--host; no token: keep it on a private network (a proxy's own model server reports through the "
           "proxy's /metrics instead)", PORT),
)


def build_model_server_config(flags: Mapping[str, Any] | None = None,
                              environ: Mapping[str, str] | None = None) -> ModelServerConfig:
    """Defaults < environment < flags, as for the proxy."""
    values = from_env(os.environ if environ is None else environ, MODEL_SERVER_OPTIONS)
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    return ModelServerConfig(**values)


def describe(config: Any, options: tuple[Option, ...], flags: Mapping[str, Any],
             environ: Mapping[str, str] | None = None, *, redact: Callable[[str], str] = str) -> str:
    """The effective configuration, one setting per line with where its value came from
    (``flag``, ``env`` or ``default``); secrets masked, URLs passed through ``redact``.

    For ``--print-config``: operators check what a deployment will really run with, and
    tests run it over every command line in the compose file and the manifests.
    """
    environ = os.environ if environ is None else environ
    width = max(len(option.field) for option in options)
    lines = []
    for option in options:
        value = getattr(config, option.field)
        if flags.get(option.field) is not None:
            source = "flag"
        elif environ.get(option.env):
            source = f"env {option.env}"
        else:
            source = "default"
        if value is None:
            shown = "-"
        elif option.secret:
            shown = "*** (set)"
        elif isinstance(value, str) and "://" in value:
            shown = redact(value)
        else:
            shown = str(value).lower() if isinstance(value, bool) else str(value)
        lines.append(f"{option.field.ljust(width)}  {shown}  ({source})")
    return "\n".join(lines)
