"""The OpenAPI description: built by sanic-ext from the routes, committed, served as a file.

A worker must not import sanic-ext (0.16 s of start-up and 9 MB per worker for one admin
endpoint: see ``headroom.proxy.openapi``); the committed file must be what sanic-ext builds
(``headroom.proxy.openapi_build``) from the current routes, so a route added or changed
without rebuilding it fails here.
"""

from __future__ import annotations

import subprocess
import sys

from testkit import ROOT


def test_the_committed_description_is_what_sanic_ext_builds_from_the_routes():
    check = subprocess.run([sys.executable, "-m", "headroom.proxy.openapi_build", "--check"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def test_a_worker_app_never_imports_sanic_ext():
    probe = ("import sys\n"
             "from headroom.config import build_config\n"
             "from headroom.proxy.factory import create_app\n"
             "app = create_app(build_config({}, {}))\n"
             "app.router.finalize()\n"
             "print(sorted(m for m in sys.modules if m.startswith(('sanic_ext', 'pydantic', 'jinja2'))))\n")
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
