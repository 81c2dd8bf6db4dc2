#!/usr/bin/env bash
# Install everything the tests need into .venv, lint, and run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# System services some tests drive for real: Prometheus (scrapes /metrics), redis-server, and
# Chromium (loads /dashboard headless). Installed when this runs as root with apt; otherwise
# the tests that need them are skipped.
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
# The constraints file pins torch to the CPU build before anything can pull a CUDA one.
python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,llmlingua]'

# tiktoken's encodings cannot be downloaded on an offline machine: build them locally when
# the helper is there. Without them the product falls back to estimated counts (and says so).
# The helper sits in ../shared next to the checkout, or next to the local repository this
# one was cloned from.
helper=../shared/tiktoken_cache.py
origin=$(git config --get remote.origin.url 2>/dev/null || true)
if [ ! -f "$helper" ] && [ -n "$origin" ] && [ -d "$origin" ]; then
    helper="$origin/../shared/tiktoken_cache.py"
fi
if [ ! -d .tiktoken ] && [ -f "$helper" ]; then
    python "$helper" .tiktoken
fi
if [ -d .tiktoken ]; then
    export TIKTOKEN_CACHE_DIR="$PWD/.tiktoken"
fi

# The real Codex CLI from npm (its package ships the native binary), for tests/test_codex_cli.py.
# Pinned: its flags and config keys move between releases. A failed install does not stop the
# run: those tests then skip, or fail where HEADROOM_REQUIRE_CODEX=1 (CI).
CODEX_VERSION=0.171.0
if command -v npm >/dev/null && ! npm/node_modules/.bin/codex --version 2>/dev/null | grep -q "$CODEX_VERSION"; then
    npm install --prefix npm --no-audit --no-fund --loglevel=error "@openai/codex@$CODEX_VERSION" >/dev/null \
        || echo "warning: could not install @openai/codex@$CODEX_VERSION from npm; the Codex CLI tests will not run" >&2
fi

# The real Claude Code CLI from npm, for tests/test_wrap.py (headroom wrap claude). Pinned, as
# Codex is; a failed install skips those tests, or fails them where HEADROOM_REQUIRE_CLAUDE=1 (CI).
CLAUDE_VERSION=2.1.332
if command -v npm >/dev/null && ! npm/node_modules/.bin/claude --version 2>/dev/null | grep -q "$CLAUDE_VERSION"; then
    npm install --prefix npm --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$CLAUDE_VERSION" >/dev/null \
        || echo "warning: could not install @anthropic-ai/claude-code@$CLAUDE_VERSION from npm; the wrap tests will not run" >&2
fi

# Bytecode for the project, as a wheel install has it (pip compiles at install), even where
# PYTHONDONTWRITEBYTECODE is set: the suite starts a few hundred proxies, each of which would
# otherwise compile ~110 modules again (~0.15 s of CPU per launch).
python -m compileall -q headroom testkit >/dev/null

# Lint first: a finding fails the run before any test starts. Then the import contracts
# (layers, no cycles: [tool.importlinter] in pyproject.toml) and the type checker.
ruff check .
lint-imports
mypy

exec python -m pytest -q -W ignore::DeprecationWarning "$@"
