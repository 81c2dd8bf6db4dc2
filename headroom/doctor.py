"""``headroom doctor``: what a user can get wrong, checked before it costs them a failed start or
a quietly degraded proxy, each finding printed with its fix.

It reads the same flags and ``HEADROOM_*`` variables as ``headroom proxy`` and checks what that
configuration needs: tiktoken's encodings (without them counts are estimates), the port, Redis
(``--redis-url``) and ``redis-server`` (``--workers N``), LLMLingua and its model
(``--llmlingua``), a model server (``--model-server-url``), the log file, and an admin token when
listening beyond loopback. Exit 0 only when nothing is wrong; warnings do not fail it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from headroom.config import ProxyConfig

Level = Literal["ok", "warn", "fail"]
CHECK_TIMEOUT_S = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    level: Level
    subject: str
    message: str
    fix: str | None = None


def _in_thread(call: Callable[[], T], timeout: float = CHECK_TIMEOUT_S) -> T:
    """``call()``'s result, or ``TimeoutError`` when it takes longer: no check can hang doctor."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - reported as the finding
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" in result:
        raise result["error"]
    if "value" not in result:
        raise TimeoutError(f"no answer within {timeout:g}s")
    return result["value"]


def check_tiktoken(config: ProxyConfig) -> Finding:
    from headroom.transforms import tokens

    subject = f"tiktoken {tokens.ENCODING_NAME}"
    if not config.optimize:
        return Finding("ok", subject, "not needed (--no-optimize)")
    name = hashlib.sha1(tokens.O200K_URL.encode()).hexdigest()  # tiktoken's file name for it
    cached = os.path.join(tokens.cache_dir(), name)
    if not os.path.exists(cached):
        return Finding("fail", subject, f"not in tiktoken's cache ({tokens.cache_dir()}) and it cannot be "
                       "downloaded offline: token counts would be estimates", tokens.remedy())
    try:
        _in_thread(lambda: tokens.load_encoding()("doctor"))  # what the proxy loads, as it loads it
    except Exception as exc:  # noqa: BLE001 - a corrupt or truncated cache file
        return Finding("fail", subject, f"cached copy {cached} does not load ({exc.__class__.__name__}): "
                       "token counts would be estimates", f"delete it, then: {tokens.remedy()}")
    return Finding("ok", subject, f"present ({cached})")


def check_port(config: ProxyConfig) -> Finding:
    from headroom.port_check import check_port as holder_of

    subject = f"port {config.host}:{config.port}"
    state = holder_of(config.host, config.port)
    if state.holder == "free":
        return Finding("ok", subject, "free")
    if state.holder == "headroom":
        return Finding("ok", subject, "held by a running Headroom (headroom wrap reuses it; a second "
                       "headroom proxy needs another --port)")
    if state.holder == "forbidden":
        return Finding("fail", subject, f"cannot be bound: {state.detail}",
                       "choose a port above 1023 with --port, or another --host")
    return Finding("fail", subject, f"held by {state.detail}", "stop that program, or choose another --port")


def check_redis(config: ProxyConfig) -> Finding | None:
    if not config.redis_url:
        return None
    from headroom.state.redis_url import redact_url

    subject = f"redis {redact_url(config.redis_url)}"
    if "+sentinel" in config.redis_url.split("://", 1)[0]:
        return Finding("warn", subject, "through Sentinel: not checked by doctor",
                       "check it with redis-cli -p 26379 SENTINEL get-master-addr-by-name <master>")
    import redis

    try:
        client = redis.Redis.from_url(config.redis_url, socket_timeout=config.redis_timeout,
                                      socket_connect_timeout=config.redis_timeout)
        info = _in_thread(lambda: client.info("server"))
    except Exception as exc:  # noqa: BLE001 - reported as the finding, without the URL's secrets
        return Finding("fail", subject, f"unreachable ({exc.__class__.__name__}): requests would go on "
                       f"{'rejected with 503 (--fail-closed)' if config.fail_closed else 'unguarded and uncached'}",
                       "start Redis, or correct --redis-url (host, port, password, TLS: rediss://)")
    version = str(info.get("redis_version", "?"))
    if int(version.split(".")[0]) < 6 if version[:1].isdigit() else False:
        return Finding("fail", subject, f"Redis {version}: Headroom needs 6.0 or newer", "upgrade Redis")
    return Finding("ok", subject, f"reachable, Redis {version}")


def check_redis_server(config: ProxyConfig) -> Finding | None:
    if config.workers <= 1 or config.redis_url:
        return None
    found = shutil.which("redis-server")
    if found is None:
        return Finding("fail", "redis-server", f"not on PATH: --workers {config.workers} without --redis-url "
                       "starts a private redis-server for the workers to share",
                       "install it (apt install redis-server, brew install redis), or pass --redis-url")
    return Finding("ok", "redis-server", f"on PATH ({found}), for --workers {config.workers}")


def check_llmlingua(config: ProxyConfig) -> Finding | None:
    if not config.llmlingua or config.model_server_url:
        return None
    from headroom.models.probe import INSTALL_HINT, llmlingua_installed

    subject = "LLMLingua"
    if not llmlingua_installed():
        return Finding("fail", subject, "--llmlingua asked for, but its libraries are not installed (the proxy "
                       "would run without it)", INSTALL_HINT)
    model = config.llmlingua_model
    if os.path.isdir(model) or (os.path.sep in model and not os.path.exists(model)):
        if os.path.isfile(os.path.join(model, "config.json")):
            return Finding("ok", subject, f"installed; model folder {model}")
        return Finding("fail", subject, f"model folder {model} has no config.json",
                       "pass --llmlingua-model a folder saved with save_pretrained, or a hub name")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - an unusual hub setup: say so rather than fail
        cached = None
    if isinstance(cached, str):
        return Finding("ok", subject, f"installed; model {model} in the Hugging Face cache")
    return Finding("warn", subject, f"model {model} is not in the Hugging Face cache: the model server downloads it "
                   "at first start (offline, it cannot)",
                   f"huggingface-cli download {model}, or pass --llmlingua-model a local folder")


def check_model_server(config: ProxyConfig) -> Finding | None:
    if not config.model_server_url:
        return None
    import asyncio

    from headroom.workers.model_client import ModelClient

    url = config.model_server_url
    subject = f"model server {url}"

    async def ask() -> dict | None:
        client = ModelClient(url, config.model_server_token)
        try:
            return await client.status(timeout_s=CHECK_TIMEOUT_S)
        finally:
            await client.close()

    try:
        status = asyncio.run(ask())
    except ValueError as exc:
        return Finding("fail", subject, f"not a model server URL: {exc}", "unix:///path or tcp://host:port")
    if status is None:
        return Finding("fail", subject, "does not answer: requests would go on without LLMLingua",
                       "start it (headroom model-server), or correct --model-server-url / --model-server-token")
    return Finding("ok", subject, f"answers ({status.get('state', '?')})")


def check_log_file(config: ProxyConfig) -> Finding | None:
    if not config.log_file:
        return None
    from headroom.observability.request_log import RequestLog

    try:
        RequestLog(config.log_file).check()
    except OSError as exc:
        return Finding("fail", f"log file {config.log_file}", f"not writable: {exc.strerror or exc}",
                       "choose a path in a folder this user can write, or fix its permissions")
    return Finding("ok", f"log file {config.log_file}", "writable")


def check_admin_token(config: ProxyConfig) -> Finding:
    if config.loopback_only:
        return Finding("ok", "admin token", f"not needed on {config.host} (loopback only)")
    if config.admin_token:
        return Finding("ok", "admin token", f"set (listening on {config.host})")
    return Finding("fail", "admin token", f"none while listening on {config.host}: anyone who can reach the port "
                   "can read /stats, /metrics and stored originals (/v1/retrieve)",
                   "set HEADROOM_ADMIN_TOKEN (or --admin-token), or listen on 127.0.0.1")


CHECKS = (check_tiktoken, check_port, check_redis, check_redis_server, check_llmlingua, check_model_server,
          check_log_file, check_admin_token)


def findings(config: ProxyConfig) -> Iterator[Finding]:
    for check in CHECKS:
        finding = check(config)
        if finding is not None:
            yield finding


def run_doctor(config: ProxyConfig) -> int:
    problems = 0
    for finding in findings(config):
        problems += finding.level == "fail"
        print(f"{finding.level.upper():4}  {finding.subject}: {finding.message}", flush=True)
        if finding.fix and finding.level != "ok":
            print(f"      fix: {finding.fix}", flush=True)
    print("no problems found" if not problems else f"{problems} problem{'s' if problems != 1 else ''} found",
          file=sys.stderr)
    return 1 if problems else 0
