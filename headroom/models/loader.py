"""Build a ready :class:`~headroom.models.lingua2.Lingua2` from a model name or folder.

Where an exported ONNX model is looked for (first hit wins), for a local ``model`` folder:

1. ``model`` itself, when it holds the export marker (``headroom-lingua.json``);
2. ``model/onnx/``;
3. the sibling folder ``<model>-onnx`` (e.g. ``models/llmlingua-2-bert-base-multilingual-cased-meetingbank-onnx``).

``export_onnx(model, out_dir)`` writes such a folder. A hub name (not a local folder) has no
export; it always loads with torch.

``backend="auto"``: ONNX Runtime when the device is the CPU and an export is found (its
default file: int8 when it was exported with ``int8=True``), torch otherwise and always on
GPU. Explicit choices: ``"torch"``, ``"onnx"`` (fp32 file), ``"onnx-int8"``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from headroom.models.export import FP32_FILE, INT8_FILE, read_marker
from headroom.models.lingua2 import MAX_WINDOW_TOKENS, Lingua2

DEVICES = ("cpu", "cuda", "mps")
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
DEFAULT_MODEL = "microsoft/llmlingua-2-bert-base-multilingual-cased-meetingbank"


def llmlingua_installed() -> bool:
    """Whether the torch backend can load (torch and transformers importable); no import."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` if available, then ``mps``, then ``cpu``; others are checked."""
    device = (device or "auto").lower()
    if device != "auto":
        if device.split(":", 1)[0] not in DEVICES:
            raise ValueError(f"unknown device {device!r}; expected auto, {', '.join(DEVICES)}")
        return device
    if importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def find_export(model: str | os.PathLike) -> Path | None:
    """The folder holding an exported ONNX model for ``model`` (see module doc), or None."""
    base = Path(model).expanduser()
    if not base.is_dir():
        return None
    base = base.resolve()
    for candidate in (base, base / "onnx", base.parent / f"{base.name}-onnx"):
        if candidate.is_dir() and read_marker(candidate) is not None:
            return candidate
    return None


def load_lingua(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    backend: str = "auto",
    *,
    threads: int | None = None,
    max_window_tokens: int = MAX_WINDOW_TOKENS,
    batch_size: int = 16,
) -> Lingua2:
    """Load tokenizer and backend for ``model`` (hub name or local folder)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    export = find_export(model)
    marker = read_marker(export) if export else None

    if backend == "auto":
        if dev == "cpu" and marker is not None:
            backend = "onnx-int8" if marker.get("default") == "int8" and marker.get("int8") else "onnx"
        else:
            backend = "torch"

    from transformers import AutoTokenizer

    if backend == "torch":
        source = str(model)
        if marker is not None and export == Path(model).expanduser().resolve():
            source = str(marker.get("source") or model)  # an export folder has no torch weights
        from headroom.models.torch_backend import TorchBackend

        tokenizer = AutoTokenizer.from_pretrained(source)
        runner = TorchBackend.from_pretrained(source, device=dev, threads=threads)
        return Lingua2(tokenizer, runner, max_window_tokens, batch_size=batch_size)

    if marker is None or export is None:
        raise FileNotFoundError(
            f"backend {backend!r} needs an exported ONNX model for {model!r}: run "
            f"`headroom llmlingua export --model {model} --out {model}-onnx` (see headroom.models.loader)"
        )
    if backend == "onnx-int8":
        if not marker.get("int8"):
            raise FileNotFoundError(f"{export} has no int8 model; export again with int8=True")
        path = export / str(marker.get("int8") or INT8_FILE)
    else:
        path = export / str(marker.get("fp32") or FP32_FILE)
    from headroom.models.onnx_backend import OnnxBackend

    tokenizer = AutoTokenizer.from_pretrained(str(export))
    onnx_runner = OnnxBackend(path, device=dev, name=backend, threads=threads)
    return Lingua2(
        tokenizer,
        onnx_runner,
        max_window_tokens,
        batch_size=batch_size,
        word_scheme=marker.get("word_scheme"),
    )
