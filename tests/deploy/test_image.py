"""The Dockerfile, built and run for real with podman: both targets, as the compose file and
the Kubernetes manifests run them.

- the proxy image answers ``/health`` on 0.0.0.0, runs as a non-root user, forwards requests
  to the upstream (the session's mock), passes its own HEALTHCHECK, and exits 0 promptly on
  SIGTERM (``podman stop``), with one worker and with several (the image's own redis-server);
- the ``llmlingua`` target imports torch (the CPU build), transformers and onnxruntime, and
  serves as the standalone model server that a proxy container uses over TCP with a token.

PyTorch for the llmlingua target comes from ``--build-arg TORCH_INDEX_URL``. Where
download.pytorch.org cannot be reached and the CPU wheel lies in /opt/wheels (or
``HEADROOM_TORCH_WHEEL``), this file serves a one-package PEP 503 index of it on 127.0.0.1.

Images are built once per module; the containers and tags are removed at the end (the
build's intermediate layers stay as the next run's cache).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest

from testkit.ports import free_port
from testkit.services import stop
from testkit.waiting import wait_for

from .containers import Podman, listening_addresses, setup

TORCH_WHEELS = "/opt/wheels/torch-*+cpu-cp311-*.whl"
TORCH_INDEX_PORT = 38790  # preferred: a stable TORCH_INDEX_URL keeps the build cache of the torch layer
ADMIN = "test-admin-token"
CONTAINER_UID = "10001"


@pytest.fixture(scope="module")
def podman():
    handle = setup()
    yield handle
    handle.remove_all()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def torch_index_url(tmp_path_factory):
    """``TORCH_INDEX_URL`` for the build: a local PEP 503 index of the CPU wheel when there is one,
    else ``None`` (the Dockerfile's default, download.pytorch.org)."""
    wheels = sorted(glob.glob(os.environ.get("HEADROOM_TORCH_WHEEL") or TORCH_WHEELS))
    if not wheels:
        yield None
        return
    root = tmp_path_factory.mktemp("torch-index")
    package = root / "simple" / "torch"
    package.mkdir(parents=True)
    links = []
    for wheel in wheels:
        name = Path(wheel).name
        (package / name).symlink_to(wheel)
        links.append(f'<a href="{quote(name)}">{name}</a>')
    (package / "index.html").write_text(f"<!DOCTYPE html><html><body>{''.join(links)}</body></html>\n")
    (root / "simple" / "index.html").write_text('<!DOCTYPE html><html><body><a href="torch/">torch</a></body></html>\n')
    port = TORCH_INDEX_PORT if _port_free(TORCH_INDEX_PORT) else free_port()
    log = root / "http.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(root)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/simple"
    try:
        wait_for(lambda: _answers(f"{url}/torch/"), timeout=15, interval=0.05, what="the local torch index")
        yield url
    finally:
        stop(proc)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def images(podman: Podman, torch_index_url, tmp_path_factory):
    """Both targets, built once: ``{"proxy": tag, "llmlingua": tag}`` and the build times."""
    run = uuid.uuid4().hex[:8]
    tags = {"llmlingua": f"localhost/headroom-test:llmlingua-{run}", "proxy": f"localhost/headroom-test:proxy-{run}"}
    logs = tmp_path_factory.mktemp("builds")
    try:
        started = time.monotonic()
        build_args = ["--build-arg", f"TORCH_INDEX_URL={torch_index_url}"] if torch_index_url else []
        podman.build(tags["llmlingua"], logs / "llmlingua.log", "--target", "llmlingua", *build_args)
        middle = time.monotonic()
        podman.build(tags["proxy"], logs / "proxy.log")  # the default target; shares every layer up to its own
        print(f"\nbuild times: llmlingua {middle - started:.0f}s, proxy {time.monotonic() - middle:.0f}s")
        yield tags
    finally:
        podman.remove_all()
        podman.remove_images(*tags.values())


def _health(url: str) -> dict | None:
    try:
        response = httpx.get(f"{url}/health", timeout=2)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def wait_healthy(podman: Podman, name: str, url: str, timeout: float = 60) -> dict:
    def check():
        state = podman.state(name)
        if state["status"] not in ("running", "created", "configured"):
            raise AssertionError(f"container {name} is {state}:\n{podman.logs(name)}")
        return _health(url)

    try:
        return wait_for(check, timeout=timeout, interval=0.1, what=f"{url}/health")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{podman.logs(name)}") from None


def proxy_env(mock_url: str, port: int, **extra: str) -> dict[str, str]:
    return {"HEADROOM_PORT": str(port), "ANTHROPIC_TARGET_API_URL": mock_url, "OPENAI_TARGET_API_URL": mock_url,
            "HEADROOM_ADMIN_TOKEN": ADMIN, **extra}


def assert_stops_cleanly(podman: Podman, name: str) -> None:
    """SIGTERM (podman stop) ends it with exit code 0, well before podman's 10-second SIGKILL."""
    took = podman.stop(name, timeout_s=10)
    state = podman.state(name)
    assert state["status"] == "exited", state
    assert state["exit_code"] == "0", f"exit code {state['exit_code']} after SIGTERM:\n{podman.logs(name)}"
    assert took < 7, f"podman stop took {took:.1f}s: the process did not end on SIGTERM"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_proxy_image_serves_on_all_interfaces_as_a_non_root_user(podman, images, mock):
    port = free_port()
    name = podman.start(unique("headroom-test-proxy"), images["proxy"], env=proxy_env(mock.url, port))
    url = f"http://127.0.0.1:{port}"
    health = wait_healthy(podman, name, url)
    assert health["status"] == "healthy"
    assert listening_addresses(port) == {"0.0.0.0"}, "the container's proxy must bind every interface"
    assert f"listening on http://0.0.0.0:{port}" in podman.logs(name)

    assert podman.state(name)["user"] == "10001:10001"
    assert podman.run("exec", name, "id", "-u").stdout.strip() == CONTAINER_UID
    pid1_uid = podman.run("exec", name, "sh", "-c", "awk '/^Uid:/ {print $2}' /proc/1/status").stdout.strip()
    assert pid1_uid == CONTAINER_UID, "the proxy process itself must not run as root"

    # Requests go through the container to the upstream, with the SDKs' native shapes.
    marker = uuid.uuid4().hex[:12]  # the mock echoes the first 40 characters
    claude = anthropic.Anthropic(base_url=url, api_key="sk-ant-container", max_retries=0, timeout=20)
    message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                                     messages=[{"role": "user", "content": f"anthropic {marker}"}])
    assert message.content[0].text.startswith(f"mock reply: anthropic {marker}")
    gpt = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-openai-container", max_retries=0, timeout=20)
    completion = gpt.chat.completions.create(model="gpt-4o-mini",
                                             messages=[{"role": "user", "content": f"openai {marker}"}])
    assert completion.choices[0].message.content.startswith(f"mock reply: openai {marker}")
    seen = [request for request in mock.requests() if marker in request.get("body", "")]
    assert {request["path"] for request in seen} == {"/v1/messages", "/v1/chat/completions"}

    # The admin token from the environment guards /metrics, which counts both requests.
    assert httpx.get(f"{url}/metrics", timeout=5).status_code == 401
    metrics = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {ADMIN}"}, timeout=5).text
    assert 'headroom_requests_total{model="claude-sonnet-4-5",provider="anthropic",status="200"}' in metrics

    # The image's HEALTHCHECK, run as the container engine runs it (it follows HEADROOM_PORT).
    assert podman.run("healthcheck", "run", name, check=False).returncode == 0, podman.logs(name)

    assert_stops_cleanly(podman, name)


def test_proxy_image_runs_several_workers_on_its_own_redis_and_stops_cleanly(podman, images, mock):
    port = free_port()
    name = podman.start(unique("headroom-test-workers"), images["proxy"],
                        env=proxy_env(mock.url, port, HEADROOM_WORKERS="2"))
    url = f"http://127.0.0.1:{port}"
    wait_healthy(podman, name, url)
    assert "(2 workers)" in podman.logs(name)
    headers = {"x-api-key": "sk-ant-workers", "anthropic-version": "2023-06-01"}
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "two workers"}]}
    for _ in range(4):
        assert httpx.post(f"{url}/v1/messages", json=body, headers=headers, timeout=20).status_code == 200
    # Both workers read the one store (the private redis-server in the container): the totals agree.
    assert wait_for(lambda: (_health(url) or {}).get("stats", {}).get("total_requests", 0) >= 4, timeout=10)
    assert_stops_cleanly(podman, name)


def test_llmlingua_image_has_cpu_torch_transformers_and_onnxruntime(podman, images):
    check = (
        "import importlib.metadata as m, json, torch, transformers, onnxruntime; "
        "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
        "'transformers': transformers.__version__, 'onnxruntime': onnxruntime.__version__, "
        "'nvidia': sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].startswith('nvidia')), "
        "'providers': onnxruntime.get_available_providers()}))"
    )
    result = podman.run("run", "--rm", "--network", "host", images["llmlingua"], "python", "-c", check, timeout=120)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["torch"].endswith("+cpu") and found["cuda"] is None, found
    assert found["nvidia"] == [], "a CUDA build of torch (or its nvidia-* wheels) was installed"
    assert "CPUExecutionProvider" in found["providers"]
    assert podman.run("run", "--rm", images["llmlingua"], "id", "-u").stdout.strip() == CONTAINER_UID


def test_proxy_container_uses_the_llmlingua_image_as_its_model_server(podman, images, mock, lingua_model):
    """The compose topology: a slim proxy container, a model-server container on TCP with a token."""
    # The tiny model, readable by the container's user (pytest's own temporary folders are private).
    shared = Path(tempfile.mkdtemp(prefix="headroom-test-model-"))
    try:
        model = shared / lingua_model.name
        shutil.copytree(lingua_model, model)
        for path in [shared, *shared.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        model_port, proxy_port = free_port(), free_port()
        server = podman.start(
            unique("headroom-test-model"), images["llmlingua"], "-v", f"{model}:/model:ro",
            env={"HEADROOM_MODEL_SERVER_TOKEN": "model-token", "HF_HUB_OFFLINE": "1"},
            command=("headroom", "model-server", "--host", "0.0.0.0", "--port", str(model_port),
                     "--llmlingua-model", "/model", "--llmlingua-device", "cpu"),
        )
        proxy = podman.start(
            unique("headroom-test-lingua-proxy"), images["proxy"],
            env=proxy_env(mock.url, proxy_port, HEADROOM_LLMLINGUA="true",
                          HEADROOM_MODEL_SERVER_URL=f"tcp://127.0.0.1:{model_port}",
                          HEADROOM_MODEL_SERVER_TOKEN="model-token"),
        )
        url = f"http://127.0.0.1:{proxy_port}"
        wait_healthy(podman, proxy, url)
        try:
            wait_for(lambda: (_health(url) or {}).get("llmlingua") == "ready", timeout=120, interval=0.25,
                     what="the model server container loading the model")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nmodel server:\n{podman.logs(server)}\nproxy:\n{podman.logs(proxy)}") from None
        assert "model-token" not in podman.logs(server) + podman.logs(proxy)
        assert_stops_cleanly(podman, proxy)
        assert_stops_cleanly(podman, server)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_build_context_holds_only_what_the_image_needs(podman, tmp_path):
    """.dockerignore as the engine applies it: no .venv, .git, tests or caches go to the build."""
    probe = tmp_path / "Containerfile"
    probe.write_text("FROM python:3.11-slim\nCOPY . /context\n"
                     "RUN find /context -mindepth 1 -maxdepth 1 | sort && find /context -name __pycache__\n")
    tag = f"localhost/headroom-test:context-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "context.log"
    try:
        podman.build(tag, log, "-f", str(probe), "--layers=false")
    finally:
        podman.run("rmi", "--force", "--ignore", tag, check=False, timeout=120)
    listed = {line.strip() for line in log.read_text().splitlines() if line.startswith("/context/")}
    assert listed == {"/context/README.md", "/context/headroom", "/context/pyproject.toml"}, listed
