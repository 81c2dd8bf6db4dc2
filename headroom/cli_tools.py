"""The ``headroom wrap`` and ``headroom doctor`` subcommands: their parsers and dispatch.

Kept out of :mod:`headroom.cli` so that module only registers them; both take every flag of
``headroom proxy`` (generated from :data:`headroom.config.OPTIONS`, with the same environment
variables), since they start or check the proxy those flags describe.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from headroom.config import OPTIONS, ConfigError, ProxyConfig, build_config

COMMANDS = ("wrap", "doctor")


def add_parsers(commands: Any, add_option: Callable[[argparse.ArgumentParser, Any, Any], None]) -> None:
    from headroom.wrap import AGENTS

    wrap = commands.add_parser(
        "wrap", help="run Claude Code or Codex through Headroom (starts a proxy unless one is running)",
        allow_abbrev=False,  # the agent's own options (claude --model) must not match a proxy flag's prefix
        description="Run a coding agent through Headroom: reuse the Headroom already on --port or start one with "
                    "these flags (as headroom proxy), launch the agent pointed at it, and stop the proxy it started "
                    "when the agent exits. Proxy flags go before the agent's name, the agent's own after it: "
                    "headroom wrap --port 9000 claude --continue",
    )
    for option in OPTIONS:
        add_option(wrap, option, ProxyConfig())
    wrap.add_argument("agent", choices=sorted(AGENTS), help="the agent to run")
    wrap.add_argument("agent_args", nargs=argparse.REMAINDER, metavar="...", help="passed to the agent unchanged")
    doctor = commands.add_parser(
        "doctor", help="check this machine and these settings for what would stop the proxy working well",
        description="Check what headroom proxy would run with (same flags and environment): tiktoken's encodings, "
                    "the port, Redis, redis-server for --workers N, LLMLingua, the model server, the log file, the "
                    "admin token. Prints each finding with its fix; exit 0 only when nothing is wrong.",
    )
    for option in OPTIONS:
        add_option(doctor, option, ProxyConfig())


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    flags = {option.field: getattr(args, option.field) for option in OPTIONS}
    try:
        config = build_config(flags)
    except ConfigError as exc:
        parser.exit(2, f"headroom: error: {exc}\n")
    if args.command == "doctor":
        from headroom.doctor import run_doctor

        return run_doctor(config)
    from headroom.wrap import WrapError, wrap

    try:
        return wrap(args.agent, args.agent_args, config, flags)
    except WrapError as exc:
        print(f"headroom: error: {exc}", file=sys.stderr)
        return 2
