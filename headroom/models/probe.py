"""What the proxy's main process may know about LLMLingua without importing torch.

The proxy answers ``/health`` within a second of launch, and importing torch alone takes
longer, so the main process only looks: whether the packages are installed, and which device
``auto`` will give, read from torch's own build information file (``torch/version.py``)
and the machine (an NVIDIA driver, Apple silicon). The model server then gets the device by
name, so the line printed at start-up names the device actually used.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from pathlib import Path

INSTALL_HINT = "pip install headroom-ai[llmlingua]"


def llmlingua_installed() -> bool:
    """torch and transformers importable (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def _torch_cuda_build() -> bool:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return False
    match = re.search(r"^cuda\b[^=]*=\s*(.+)$", text, re.M)
    return match is not None and match.group(1).strip() not in ("None", "''", '""')


def _nvidia_driver() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def choose_device(requested: str = "auto") -> str:
    """``auto``: cuda (a CUDA build of torch and an NVIDIA driver), then mps (Apple silicon),
    then cpu. Any other value is returned as asked."""
    if requested != "auto":
        return requested
    if _torch_cuda_build() and _nvidia_driver():
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"
