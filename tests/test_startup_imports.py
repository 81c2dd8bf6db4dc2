"""What ``headroom proxy`` imports before it serves, and where: the budget is 0.5 s to the
first ``/health`` with one worker and 1 s with four (``load_tests/footprint.py``).

Each check runs in a fresh interpreter: what is imported is the behaviour under test."""

from __future__ import annotations

import json
import subprocess
import sys

from testkit import ROOT


def _modules(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_main_process_imports_what_forked_workers_import_before_forking():
    # Before, it imported headroom.proxy.server, which builds its app lazily and so imported
    # nothing: each of 4 forked workers imported the app itself (/health 1.18 s → 0.88 s).
    found = _modules(
        "import json, sys\n"
        "from headroom.config import ProxyConfig\n"
        "from headroom.serve import import_worker_modules\n"
        "before = {m: m in sys.modules for m in ('headroom.proxy.routes', 'headroom.proxy.http1', 'httptools',\n"
        "                                        'prometheus_client', 'redis')}\n"
        "import_worker_modules(ProxyConfig(redis_url='redis://127.0.0.1:6379/0'))\n"
        "after = {m: m in sys.modules for m in before}\n"
        "print(json.dumps({'before': before, 'after': after, 'aiohttp': 'aiohttp' in sys.modules}))"
    )
    assert not any(found["before"].values())
    assert all(found["after"].values()), found["after"]
    assert not found["aiohttp"]  # the upstream client is Headroom's own: a worker holds no aiohttp


def test_without_a_shared_redis_its_client_is_not_imported():
    found = _modules(
        "import json, sys\n"
        "from headroom.config import ProxyConfig\n"
        "from headroom.serve import import_worker_modules\n"
        "import_worker_modules(ProxyConfig())\n"
        "print(json.dumps({m: m in sys.modules for m in ('headroom.proxy.routes', 'redis')}))"
    )
    assert found == {"headroom.proxy.routes": True, "redis": False}


def test_headroom_proxy_builds_only_its_own_parser():
    found = _modules(
        "import json, sys\n"
        "from headroom.cli import make_parser\n"
        "args = make_parser(proxy_only=True).parse_args(['proxy', '--port', '9100'])\n"
        "print(json.dumps({'port': args.port, **{m: m in sys.modules for m in "
        "('headroom.wrap', 'headroom.mcp_server', 'headroom.cli_tools', 'headroom.workers.supervisor')}}))"
    )
    assert found == {"port": 9100, "headroom.wrap": False, "headroom.mcp_server": False,
                     "headroom.cli_tools": False, "headroom.workers.supervisor": False}


def test_the_whole_command_still_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "headroom", "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0
    for command in ("proxy", "model-server", "llmlingua", "report", "wrap", "doctor", "mcp"):
        assert command in out.stdout
