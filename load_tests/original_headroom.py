"""The original Headroom (PyPI ``headroom-ai`` 0.42.0) as a benchmark reference.

It has the same distribution name as this project, so it lives in its own virtual
environment (never this project's). ``headroom proxy`` there takes ``--host``, ``--port``,
``--anthropic-api-url`` and ``--openai-api-url``, so it can be pointed at the local mock
upstream like ours. It is started with its defaults (optimisation on, INFO logs) plus
``--no-telemetry`` and rate limits too high to refuse anything (its default is 60 requests a
minute), with ``HOME`` in a scratch folder so it writes nothing into the user's.
Offline it cannot fetch LiteLLM's price map (it retries, then carries on) nor download its
tiktoken encoding (it then skips optimisation of that request and forwards it as is).

    python load_tests/original_headroom.py --venv /tmp/orig-venv   # create it, install 0.42.0
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "0.42.0"
# Its default is 60 requests a minute (then 429): set too high to refuse anything, like ours in bench.py.
NO_REFUSALS = ["--rpm", "1000000000", "--tpm", "1000000000000"]
DEFAULT_VENV = Path(os.environ.get("HEADROOM_ORIGINAL_VENV", "/tmp/orig-venv"))


def executable(venv: Path) -> Path:
    return venv / "bin" / "headroom"


def available(venv: Path) -> str | None:
    """None when the original is installed in ``venv``, else why it is not usable."""
    exe = executable(venv)
    if not exe.is_file():
        return (f"not installed: {exe} is missing (create it with "
                f"`python load_tests/original_headroom.py --venv {venv}`)")
    try:
        # -I and cwd="/": a checkout of this project in the working folder would answer instead.
        out = subprocess.run([str(venv / "bin" / "python"), "-I", "-c",
                              "import importlib.metadata as m; print(m.version('headroom-ai'))"],
                             capture_output=True, text=True, timeout=30, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {venv}/bin/python: {exc}"
    version = out.stdout.strip()
    if version != VERSION:
        return f"{venv} holds headroom-ai {version or '?'}, not {VERSION}"
    return None


def install(venv: Path, timeout: float = 900) -> str | None:
    """Create ``venv`` and install the original into it; None on success, else the reason."""
    try:
        if not (venv / "bin" / "python").is_file():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"headroom-ai[proxy]=={VERSION}"],
                       check=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"installing headroom-ai[proxy]=={VERSION} failed: {exc}"
    return available(venv)


def command(venv: Path, port: int, upstream: str, extra: list[str] | None = None) -> list[str]:
    return [str(executable(venv)), "proxy", "--host", "127.0.0.1", "--port", str(port),
            "--anthropic-api-url", upstream, "--openai-api-url", upstream, "--no-telemetry", *NO_REFUSALS,
            *(extra or [])]


def environment() -> tuple[dict[str, str], str]:
    """Environment and working folder for the original: a scratch HOME, offline model hubs."""
    home = tempfile.mkdtemp(prefix="headroom-original-")
    env = {**os.environ, "HOME": home, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HEADROOM_TELEMETRY": "off", "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    return env, home


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="install the original Headroom into its own venv")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = p.parse_args(argv)
    why = available(args.venv) and install(args.venv)
    print(why or f"headroom-ai {VERSION} ready in {args.venv}")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main())
