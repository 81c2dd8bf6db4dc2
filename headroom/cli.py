"""The ``headroom`` command.

``headroom proxy`` starts the proxy. Its flags are generated from
:data:`headroom.config.OPTIONS`, so flags, environment variables and the README table
cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

from headroom import __version__
from headroom.config import OPTIONS, ConfigError, Option, ProxyConfig, build_config, not_yet_available


def _flag_type(option: Option):
    def parse(text: str):
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(option.parse, "__name__", "value")
    return parse


def add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    help_text = f"{option.help} [env {option.env}]"
    if option.not_yet:
        help_text += " (not available yet)"
    if option.switch:
        parser.add_argument(
            option.flag, dest=option.field, action="store_const", const=option.switch == "store_true",
            default=None, help=help_text,
        )
        return
    default = getattr(ProxyConfig(), option.field)
    if default is not None:
        help_text += f" (default: {default})"
    parser.add_argument(
        option.flag, dest=option.field, type=_flag_type(option), choices=option.choices, default=None,
        help=help_text, metavar=option.field.upper() if not option.choices else None,
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headroom", description="A transparent, cache-safe token-saving proxy for LLM APIs."
    )
    parser.add_argument("--version", action="version", version=f"headroom {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    proxy = commands.add_parser(
        "proxy",
        help="run the proxy",
        description="Run the Headroom proxy. Every flag can also be set by the environment variable named in its help.",
    )
    for option in OPTIONS:
        add_option(proxy, option)
    return parser


def _state_line(config: ProxyConfig) -> str:
    if not config.redis_url:
        return "in memory"
    from headroom.state.redis_store import redact_url

    return f"redis {redact_url(config.redis_url)}"


def _limits_line(config: ProxyConfig) -> str:
    if not config.rate_limit or not (config.rpm or config.tpm):
        return "off"
    return f"{config.rpm or 'no'} rpm, {config.tpm or 'no'} tpm per key"


def _budget_line(config: ProxyConfig) -> str:
    if not config.budget:
        return "none"
    return f"${config.budget:g} {config.budget_period} ({config.budget_scope})"


def banner(config: ProxyConfig) -> str:
    def on(flag: bool) -> str:
        return "on" if flag else "off"

    workers = f"{config.workers} worker{'s' if config.workers != 1 else ''}"
    lines = [
        f"Headroom {__version__} listening on http://{config.host}:{config.port} ({workers})",
        f"  anthropic -> {config.anthropic_api_url}",
        f"  openai    -> {config.openai_api_url}",
        f"  optimize: {on(config.optimize)}   max body: {config.max_body_mb:g} MiB   "
        f"timeouts: connect {config.connect_timeout:g}s, upstream silence {config.request_timeout:g}s",
        f"  state: {_state_line(config)}   cache: {on(config.cache)}   "
        f"rate limit: {_limits_line(config)}   budget: {_budget_line(config)}",
        f"  request log: {config.log_file or 'off'}{' (with messages)' if config.log_messages else ''}   "
        f"admin token: {'set' if config.admin_token else 'none'}",
    ]
    return "\n".join(lines)


def startup_warnings(config: ProxyConfig) -> list[str]:
    warnings = not_yet_available(config)
    if not config.loopback_only and not config.admin_token:
        warnings.append(
            f"listening on {config.host} without --admin-token: anyone who can reach this port can read "
            "/stats, /metrics and stored originals (/v1/retrieve). Set HEADROOM_ADMIN_TOKEN."
        )
    return warnings


def run_proxy(config: ProxyConfig) -> int:
    # Imported here so `headroom --help` stays instant.
    from headroom.observability.request_log import RequestLog
    from headroom.pricing import load_pricing
    from headroom.workers.redis_server import PrivateRedis, RedisServerFailed, RedisServerMissing

    if config.log_file:
        try:
            RequestLog(config.log_file).check()
        except OSError as exc:
            print(f"headroom: error: cannot write --log-file {config.log_file}: {exc}", file=sys.stderr)
            return 2
    try:
        load_pricing(config.pricing_file)
    except (OSError, ValueError) as exc:
        print(f"headroom: error: --pricing-file {config.pricing_file}: {exc}", file=sys.stderr)
        return 2
    private = None
    if config.workers > 1 and not config.redis_url:
        # Several workers must share limits, cache and stats: give them a private Redis.
        try:
            private = PrivateRedis()
            # A secret of the run's own, not one kept in Redis: a private Redis that dies and is
            # restarted comes back empty, and every worker must keep hashing callers alike.
            config = dataclasses.replace(config, redis_url=private.start(),
                                         state_secret=config.state_secret or secrets.token_hex(32))
        except (RedisServerMissing, RedisServerFailed) as exc:
            print(f"headroom: error: {exc}", file=sys.stderr)
            return 2
    try:
        serve(config)
    finally:
        if private is not None:
            private.stop()
    return 0


def serve(config: ProxyConfig) -> None:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from headroom.observability.metrics import prepare_multiprocess_dir
    from headroom.proxy.server import create_app

    for message in startup_warnings(config):
        print(f"headroom: WARNING: {message}", file=sys.stderr)
    print(banner(config), file=sys.stderr, flush=True)
    # Every worker writes its metrics into one shared directory, so /metrics sums them all.
    prepare_multiprocess_dir()
    loader = AppLoader(factory=partial(create_app, config))
    app = loader.load()
    app.prepare(
        host=config.host, port=config.port, workers=config.workers, access_log=False, motd=False, verbosity=0
    )
    Sanic.serve(primary=app, app_loader=loader)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    flags: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        config = build_config(flags)
    except ConfigError as exc:
        parser.exit(2, f"headroom: error: {exc}\n")
    if args.command == "proxy":
        return run_proxy(config)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
