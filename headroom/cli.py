"""The ``headroom`` command.

- ``headroom proxy`` starts the proxy (:mod:`headroom.serve`);
- ``headroom model-server`` runs the LLMLingua model server on its own, on a Unix socket or
  on TCP with a shared token (for ASGI deployments, or one GPU host serving many proxies);
- ``headroom llmlingua export`` writes an ONNX model for the CPU backend;
- ``headroom wrap claude|codex`` runs an agent through a proxy, ``headroom doctor`` checks a
  setup (:mod:`headroom.cli_tools`);
- ``headroom mcp`` serves the ``headroom_retrieve`` tool to MCP clients (:mod:`headroom.mcp_server`);
- ``headroom report`` summarises request logs (``--log-file``): spent, saved, cache reads
  (:mod:`headroom.report`, imported only when that command runs).

Flags are generated from :data:`headroom.config.OPTIONS` (and ``MODEL_SERVER_OPTIONS``), so
flags, environment variables and the README table cannot drift apart.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from headroom import __version__
from headroom.config import (
    MODEL_SERVER_OPTIONS,
    OPTIONS,
    ConfigError,
    ModelServerConfig,
    Option,
    ProxyConfig,
    build_config,
    build_model_server_config,
    describe,
)
from headroom.preflight import check_listen, listen_error


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``headroom: error: --port '70000': must be …``) like
    every other configuration error, instead of the usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument (\S+): ", r"\1 ", message)
        self.exit(2, f"headroom: error: {message} (see {self.prog} --help)\n")


def _flag_type(option: Option):
    def parse(text: str):
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{option.shown(text)!r}: {exc}") from None

    parse.__name__ = getattr(option.parse, "__name__", "value")
    return parse


def add_option(parser: argparse.ArgumentParser, option: Option, defaults: Any) -> None:
    help_text = f"{option.help} [env {option.env}]".replace("%", "%%")  # argparse formats help with %
    if option.switch:
        parser.add_argument(
            option.flag, dest=option.field, action="store_const", const=option.switch == "store_true",
            default=None, help=help_text,
        )
        return
    default = getattr(defaults, option.field)
    if default is not None:
        help_text += f" (default: {default})"
    parser.add_argument(
        option.flag, dest=option.field, type=_flag_type(option), choices=option.choices, default=None,
        help=help_text, metavar=option.field.upper() if not option.choices else None,
    )


def make_parser(proxy_only: bool = False) -> argparse.ArgumentParser:
    """The command's parser; with ``proxy_only``, one that knows ``headroom proxy`` alone.

    Why: ``headroom proxy`` is what starts in production and in every test, and the other
    commands' parsers import their modules (wrap, doctor, mcp): ~40 ms of a start-up whose
    budget is 0.5 s to the first ``/health``. ``headroom --help`` still lists every command."""
    parser = Parser(
        prog="headroom", description="A transparent, cache-safe token-saving proxy for LLM APIs."
    )
    parser.add_argument("--version", action="version", version=f"headroom {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    proxy = commands.add_parser(
        "proxy",
        help="run the proxy",
        description="Run the Headroom proxy. Every flag can also be set by the environment variable named in "
                    "its help.",
    )
    for option in OPTIONS:
        add_option(proxy, option, ProxyConfig())
    proxy.add_argument("--print-config", action="store_true",
                       help="print the effective configuration (secrets masked) and exit; non-zero when invalid")
    if proxy_only:
        return parser
    server = commands.add_parser(
        "model-server",
        help="run the LLMLingua model server on its own",
        description="Serve LLMLingua-2 compression to proxies started with --model-server-url "
                    "(unix:///path for --socket, tcp://host:port with --model-server-token for TCP).",
    )
    for option in MODEL_SERVER_OPTIONS:
        add_option(server, option, ModelServerConfig())
    server.add_argument("--print-config", action="store_true",
                        help="print the effective configuration (secrets masked) and exit; non-zero when invalid")
    lingua = commands.add_parser("llmlingua", help="LLMLingua model tools")
    tools = lingua.add_subparsers(dest="tool", required=True)
    export = tools.add_parser("export", help="export a model to ONNX for the CPU backend",
                              description="Export an LLMLingua-2 model (hub name or folder) to ONNX, with dynamic "
                                          "batch and sequence axes; --llmlingua-backend auto then uses it on CPUs.")
    export.add_argument("--model", required=True, help="hub name or local folder")
    export.add_argument("--out", required=True, help="folder to write (use <model folder>-onnx to be found by auto)")
    export.add_argument("--int8", action="store_true", help="also write a dynamically quantised int8 model, "
                                                            "and make it the default")
    add_report_parser(commands)
    from headroom import cli_tools

    cli_tools.add_parsers(commands, add_option)  # wrap, doctor
    from headroom import mcp_server

    mcp_server.add_parser(commands)
    return parser


def _report_type(name: str):
    def parse(text: str):
        from headroom import report

        try:
            return getattr(report, name)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name.removeprefix("parse_")
    return parse


def add_report_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="summarise request logs: tokens, dollars spent and saved, prompt-cache reads",
        description="Summarise request logs written with --log-file (plain or gzip; - for stdin): per day (UTC), "
                    "model and caller (the api_key_hash the log carries), the requests, errors, tokens before and "
                    "after compression, dollars spent and saved, and the prompt-cache read share, "
                    "cache_read_tokens / (input_tokens + cache_read_tokens + cache_write_tokens) (the log's "
                    "input_tokens is uncached input for both providers). Malformed lines are counted and skipped.",
    )
    report.add_argument("logs", nargs="+", metavar="LOGFILE", help="request log(s): plain, .gz, or - for stdin")
    report.add_argument("--by", type=_report_type("parse_by"), default=("day", "model", "caller"),
                        help="group by these, comma-separated, in order (default: day,model,caller)")
    report.add_argument("--since", type=_report_type("parse_day"), metavar="DATE",
                        help="only requests on or after this day (YYYY-MM-DD, UTC)")
    report.add_argument("--until", type=_report_type("parse_day"), metavar="DATE",
                        help="only requests on or before this day (YYYY-MM-DD, UTC)")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument("--jobs", type=int, metavar="N",
                        help="processes reading big logs in parallel (default: the CPUs available; 1: none)")
    report.add_argument("--png", metavar="FILE",
                        help="also draw dollars spent/saved and tokens before/after per day "
                             "(needs matplotlib: pip install 'headroom-ai[report]')")


def run_model_server(config: ModelServerConfig) -> int:
    import logging

    from headroom.models.probe import INSTALL_HINT, choose_device, llmlingua_installed
    from headroom.workers.model_server import ModelServerOptions, serve_model

    if not llmlingua_installed():
        print(f"headroom: error: the model server needs LLMLingua's libraries. Install with: {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    if config.socket is None and config.host not in ("127.0.0.1", "localhost", "::1") and not config.token:
        print(f"headroom: WARNING: model server on {config.host} without --token: anyone who can reach "
              f"port {config.port} can use it", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = ModelServerOptions(
        model=config.llmlingua_model, device=choose_device(config.llmlingua_device), backend=config.llmlingua_backend,
        socket_path=config.socket, host=None if config.socket else config.host,
        port=None if config.socket else config.port, token=config.token, threads=config.threads,
        max_batch_tokens=config.max_batch_tokens, max_queue_windows=config.max_queue_windows,
    )
    if config.metrics_port:
        from prometheus_client import start_http_server

        from headroom.observability.metrics import get_metrics

        start_http_server(config.metrics_port, addr=config.host, registry=get_metrics().registry)
    where = config.socket or f"{config.host}:{config.port}"
    print(f"headroom model server listening on {where} (model {config.llmlingua_model}, loading)",
          file=sys.stderr, flush=True)
    try:
        serve_model(options)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or config.socket:  # taken after check_model_server_listen
            raise
        error = listen_error(exc, config.host, config.port)
        if error is None:
            raise
        raise error from None
    return 0


def run_export(model: str, out: str, int8: bool) -> int:
    from headroom.models.probe import INSTALL_HINT, llmlingua_installed

    if not llmlingua_installed():
        print(f"headroom: error: exporting needs LLMLingua's libraries. Install with: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from headroom.models.export import export_onnx

    path = export_onnx(model, out, int8=int8)
    print(f"exported {model} to {path}")
    return 0


def check_urls(config: ProxyConfig) -> None:
    """Parse the URLs the proxy will connect to, as the workers will (ConfigError if one cannot be)."""
    try:
        if config.redis_url:
            from headroom.state.redis_url import Endpoint

            Endpoint.from_url(config.redis_url)
    except ValueError as exc:
        raise ConfigError(f"--redis-url: {exc}") from None
    try:
        if config.model_server_url:
            from headroom.workers.model_client import ModelClient

            ModelClient(config.model_server_url)
    except ValueError as exc:
        raise ConfigError(f"--model-server-url: {exc}") from None


def check_model_server_ports(config: ModelServerConfig) -> None:
    if config.socket is None and config.metrics_port == config.port:
        raise ConfigError(f"--metrics-port {config.metrics_port}: the same as --port: pick another")


def check_model_server_listen(config: ModelServerConfig) -> None:
    if config.socket is None:
        check_listen(config.host, config.port)
    if config.metrics_port:
        check_listen(config.host, config.metrics_port, port_flag="--metrics-port")


def _run_proxy(config: ProxyConfig) -> int:
    from headroom.serve import run_proxy

    try:
        return run_proxy(config)
    except OSError as exc:
        # The port was free at check_listen but taken before Sanic bound it (the helpers start in
        # between). Only "in use": other errnos (EACCES from a file, say) are not about the port.
        if exc.errno != errno.EADDRINUSE:
            raise
        error = listen_error(exc, config.host, config.port)
        if error is None:
            raise
        raise error from None


def print_config(title: str, config: Any, options: tuple[Option, ...], flags: dict[str, Any]) -> int:
    from headroom.state.redis_url import redact_url

    print(f"# {title}: effective configuration (defaults < environment < flags)")
    print(describe(config, options, flags, redact=redact_url))
    return 0


def _given(args: argparse.Namespace, options: tuple[Option, ...]) -> dict[str, Any]:
    return {option.field: getattr(args, option.field) for option in options}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    proxy_only = argv[:1] == ["proxy"]
    if proxy_only:
        # Until the server puts its own handlers in place, a stop is noted and honoured at the
        # next safe point (headroom.workers.early_stop): exit 0, nothing left running.
        from headroom.workers.early_stop import note_stop_signals

        note_stop_signals()
    parser = make_parser(proxy_only=proxy_only)
    args = parser.parse_args(argv)
    if args.command == "report":
        from headroom.report import run as run_report

        return run_report(args.logs, args.by, args.since, args.until, as_json=args.json, png=args.png,
                          jobs=args.jobs)
    if args.command == "mcp":
        from headroom import mcp_server

        return mcp_server.run(args)
    if args.command in ("wrap", "doctor"):
        from headroom import cli_tools

        return cli_tools.run(args, parser)
    try:
        if args.command == "proxy":
            flags = _given(args, OPTIONS)
            config = build_config(flags)
            check_urls(config)
            if args.print_config:
                return print_config("headroom proxy", config, OPTIONS, flags)
            check_listen(config.host, config.port)  # before the helpers start: they take seconds
            return _run_proxy(config)
        if args.command == "model-server":
            flags = _given(args, MODEL_SERVER_OPTIONS)
            server_config = build_model_server_config(flags)
            check_model_server_ports(server_config)
            if args.print_config:
                return print_config("headroom model-server", server_config, MODEL_SERVER_OPTIONS, flags)
            check_model_server_listen(server_config)  # before the model loads: that takes seconds
            return run_model_server(server_config)
    except ConfigError as exc:
        parser.exit(2, f"headroom: error: {exc}\n")
    return run_export(args.model, args.out, args.int8)


if __name__ == "__main__":
    raise SystemExit(main())
