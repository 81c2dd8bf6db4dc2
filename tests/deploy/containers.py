"""Real container builds and runs for the deployment tests, with podman.

No container registry is reachable from the test machines, so ``shared/container/base-image.sh``
(next to the checkout, or next to the repository it was cloned from, as ``scripts/test.sh`` finds
its helper) installs podman when it is missing and builds a local stand-in for
``python:3.11-slim``. It prints the environment to use, which :func:`setup` reads.

Without podman the image tests skip; with ``HEADROOM_REQUIRE_CONTAINERS=1`` (CI) they fail.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testkit import ROOT

REQUIRE_ENV = "HEADROOM_REQUIRE_CONTAINERS"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
SETUP_TIMEOUT_S = 900  # first run: apt-get install podman + debootstrap (a few minutes); then seconds


def unavailable(reason: str) -> None:
    """Skip the calling test, or fail it when CI demands containers."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def setup_script() -> Path | None:
    candidates = [ROOT.parent / "shared" / "container" / "base-image.sh"]
    try:
        origin = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        origin = ""
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).parent / "shared" / "container" / "base-image.sh")
    return next((path for path in candidates if path.is_file()), None)


@dataclass
class Podman:
    """``podman`` with the runtime flags and environment the set-up script asked for."""

    argv: list[str]
    env: dict[str, str]
    containers: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.argv, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {shlex.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def build(self, tag: str, log: Path, *args: str, timeout: float = 1200) -> None:
        """``podman build`` of the repository (docker format keeps HEALTHCHECK), output into ``log``."""
        command = [*self.argv, "build", "--pull=never", "--network", "host", "--format", "docker", "-t", tag,
                   *args, str(ROOT)]
        with open(log, "w") as out:
            result = subprocess.run(command, env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"{shlex.join(command)} exited {result.returncode}:\n{log.read_text()[-6000:]}")

    def start(self, name: str, image: str, *args: str, env: dict[str, str] | None = None,
              command: tuple[str, ...] = ()) -> str:
        """``podman run -d`` on the host's network; remembered for :meth:`remove_all`."""
        env_args = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
        self.containers.append(name)
        # Health checks are run by hand (podman healthcheck run): no systemd timers on test machines.
        self.run("run", "-d", "--name", name, "--network", "host", "--health-interval", "disable", *env_args,
                 *args, image, *command)
        return name

    def state(self, name: str) -> dict[str, str]:
        fmt = "{{.State.Status}}|{{.State.ExitCode}}|{{.Config.User}}"
        status, code, user = self.run("inspect", "--format", fmt, name).stdout.strip().split("|")
        return {"status": status, "exit_code": code, "user": user}

    def logs(self, name: str) -> str:
        result = self.run("logs", name, check=False)
        return result.stdout + result.stderr

    def stop(self, name: str, timeout_s: int = 10) -> float:
        """``podman stop`` (SIGTERM, SIGKILL after ``timeout_s``); the seconds it took."""
        started = time.monotonic()
        self.run("stop", "--time", str(timeout_s), name, timeout=timeout_s + 30)
        return time.monotonic() - started

    def remove_all(self) -> None:
        for name in self.containers:
            self.run("rm", "--force", "--ignore", name, check=False, timeout=60)
        self.containers.clear()

    def remove_images(self, *tags: str) -> None:
        # --no-prune keeps the untagged intermediate layers: the next run's build cache (the llmlingua
        # target's PyTorch layers take minutes to rebuild). `podman image prune` reclaims them.
        self.run("rmi", "--force", "--ignore", "--no-prune", *tags, check=False, timeout=120)


def setup() -> Podman:
    """Podman ready to build ``FROM python:3.11-slim`` offline, or skip (fail in CI)."""
    script = setup_script()
    env = dict(os.environ)
    argv = ["podman"]
    if script is not None and os.geteuid() == 0:
        try:
            result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            unavailable(f"{script} did not finish in {SETUP_TIMEOUT_S}s")
        if result.returncode != 0:
            unavailable(f"{script} failed ({result.returncode}): {result.stderr[-2000:]}")
        line = next((line for line in result.stdout.splitlines() if line.startswith("export ")), None)
        if line is None:
            unavailable(f"{script} printed no environment: {result.stdout[-500:]}")
        for assignment in shlex.split(line)[1:]:
            key, _, value = assignment.partition("=")
            env[key] = value
        argv = shlex.split(env.get("PODMAN", "podman"))
    elif shutil.which("podman") is None:
        unavailable("podman is not installed, and the set-up script (shared/container/base-image.sh, run as "
                    "root) is not available to install it")
    podman = Podman(argv, env)
    try:
        podman.run("image", "exists", BASE_IMAGE, timeout=60)
    except (AssertionError, OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"the base image {BASE_IMAGE} is not available to podman: {exc}")
    return podman


def listening_addresses(port: int) -> set[str]:
    """The local addresses of IPv4 sockets listening on ``port``, read from /proc/net/tcp.

    With ``--network host`` a container's sockets live in the host's network namespace, so
    this shows which address the containerised proxy really bound.
    """
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            octets = [str(int(address[i:i + 2], 16)) for i in range(6, -1, -2)]  # little-endian
            found.add(".".join(octets))
    return found
