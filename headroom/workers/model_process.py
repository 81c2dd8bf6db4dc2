"""The proxy's own model server: ``headroom model-server`` as a supervised child on a Unix socket.

With ``--llmlingua`` and no ``--model-server-url``, the main process starts it beside the HTTP
workers (:mod:`headroom.workers.supervisor`: restarted with backoff, stopped with the proxy,
never outliving it) and hands the workers its ``unix://`` URL. It is ready as soon as its
socket accepts connections: the model itself loads in the background inside it, and until
then workers are told "loading" and go on uncompressed.

It is a plain subprocess, not a Sanic-managed one: Sanic treats a managed process whose
name contains "Server" as an HTTP worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from headroom.config import ProxyConfig
from headroom.workers.supervisor import ChildSpec, SupervisedChild, accepts_unix


def model_server_spec(config: ProxyConfig, directory: Path, device: str) -> tuple[ChildSpec, str]:
    """The child's command line and readiness check, and the URL workers use."""
    path = str(directory / "model.sock")
    argv = [sys.executable, "-m", "headroom", "model-server", "--socket", path,
            "--llmlingua-model", config.llmlingua_model, "--llmlingua-device", device,
            "--llmlingua-backend", config.llmlingua_backend]
    if device == "cpu":
        # The HTTP workers share these cores: the model takes what they leave (more threads
        # than cores made forward passes ~6x slower on a loaded 2-core machine).
        argv += ["--threads", str(max(1, (os.cpu_count() or 1) - config.workers))]
    # Its log lines go to the proxy's own stderr, beside the workers'.
    spec = ChildSpec("model server", argv, ready=lambda: accepts_unix(path), start_timeout=30.0, backoff=(0.5, 30.0))
    return spec, f"unix://{path}"


def start_model_server(config: ProxyConfig, directory: Path, device: str) -> tuple[SupervisedChild, str]:
    spec, url = model_server_spec(config, directory, device)
    child = SupervisedChild(spec)
    child.start()
    child.supervise()
    return child, url
