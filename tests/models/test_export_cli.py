"""`headroom llmlingua export` as an operator runs it, and the proxy's backend choice after it."""

from __future__ import annotations

import json
import subprocess
import sys

from testkit import ROOT
from testkit.lingua import require_llmlingua

require_llmlingua("torch", "transformers", "onnxruntime", "onnx", "onnxscript")

from headroom.models.export import FP32_FILE, INT8_FILE, MARKER  # noqa: E402
from headroom.models.loader import find_export, load_lingua  # noqa: E402


def test_the_export_command_writes_a_model_the_loader_then_prefers_on_cpu(lingua_model, tmp_path):
    model = tmp_path / lingua_model.name
    subprocess.run(["cp", "-r", str(lingua_model), str(model)], check=True)
    out = tmp_path / f"{model.name}-onnx"
    result = subprocess.run([sys.executable, "-m", "headroom", "llmlingua", "export", "--model", str(model),
                             "--out", str(out), "--int8"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"exported {model} to {out / INT8_FILE}" in result.stdout
    marker = json.loads((out / MARKER).read_text())
    assert marker["default"] == "int8" and (out / FP32_FILE).is_file()
    assert find_export(model) == out.resolve()
    assert load_lingua(str(model), device="cpu").backend.name == "onnx-int8"  # auto: the export, on the CPU
    assert load_lingua(str(model), device="cpu", backend="torch").backend.name == "torch"
