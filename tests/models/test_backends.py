"""Backends: ONNX export vs torch (fp32 identical decisions, int8 agreement) and the loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from testkit.lingua import require_llmlingua
from tests.models.support import RATES, TEXTS

require_llmlingua("torch", "transformers", "onnxruntime", "onnx", "onnxscript")

from headroom.models.export import FP32_FILE, INT8_FILE, MARKER  # noqa: E402
from headroom.models.loader import (  # noqa: E402
    find_export,
    llmlingua_installed,
    load_lingua,
    resolve_device,
)


@pytest.fixture(scope="module")
def lingua_onnx(lingua_export):
    return load_lingua(str(lingua_export), device="cpu", backend="onnx")


@pytest.fixture(scope="module")
def lingua_int8(lingua_export):
    return load_lingua(str(lingua_export), device="cpu", backend="onnx-int8")


def _decisions(lingua, windows, probs, rate):
    out = []
    for window, p in zip(windows, probs):
        out += lingua.select(window, p, rate)[1]
    return out


def test_export_writes_model_tokenizer_and_marker(lingua_export, lingua_model):
    marker = json.loads((lingua_export / MARKER).read_text())
    assert marker["fp32"] == FP32_FILE and marker["int8"] == INT8_FILE and marker["default"] == "int8"
    assert marker["source"] == str(lingua_model) and marker["word_scheme"] == "wordpiece"
    for name in (FP32_FILE, INT8_FILE, "tokenizer.json", "tokenizer_config.json", "config.json"):
        assert (lingua_export / name).is_file(), name
    assert (lingua_export / INT8_FILE).stat().st_size < (lingua_export / FP32_FILE).stat().st_size


def test_onnx_graph_has_dynamic_batch_and_sequence(lingua_export):
    import onnx

    graph = onnx.load(str(lingua_export / FP32_FILE)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims)


def test_onnx_fp32_matches_torch(lingua_torch, lingua_onnx):
    for name, text in TEXTS.items():
        plan = lingua_torch.plan(text)
        assert [w.input_ids.tolist() for w in lingua_onnx.plan(text).windows] == [
            w.input_ids.tolist() for w in plan.windows
        ]
        for batch in (plan.windows, plan.windows[:1]):  # a batch of several, and of one
            p_torch = lingua_torch.keep_probabilities(batch)
            p_onnx = lingua_onnx.keep_probabilities(batch)
            for a, b in zip(p_torch, p_onnx):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
        for rate in RATES:
            assert lingua_onnx.compress(text, rate).text == lingua_torch.compress(text, rate).text, (name, rate)
            assert _decisions(lingua_onnx, plan.windows, lingua_onnx.keep_probabilities(plan.windows), rate) == (
                _decisions(lingua_torch, plan.windows, lingua_torch.keep_probabilities(plan.windows), rate)
            )


def test_onnx_int8_agrees_with_torch(lingua_torch, lingua_int8, capsys):
    same = total = 0
    for text in TEXTS.values():
        plan = lingua_torch.plan(text)
        p_torch = lingua_torch.keep_probabilities(plan.windows)
        p_int8 = lingua_int8.keep_probabilities(plan.windows)
        for rate in RATES:
            a = _decisions(lingua_torch, plan.windows, p_torch, rate)
            b = _decisions(lingua_int8, plan.windows, p_int8, rate)
            same += sum(x == y for x, y in zip(a, b))
            total += len(a)
    agreement = same / total
    with capsys.disabled():
        print(f"\n[onnx-int8] keep-decision agreement with torch fp32: {agreement:.4f} ({same}/{total} words)")
    assert agreement >= 0.8
    assert lingua_int8.backend.name == "onnx-int8"


def test_loader_picks_onnx_for_an_exported_model_on_cpu(lingua_model, lingua_export):
    assert find_export(lingua_model) == lingua_export.resolve()  # sibling <model>-onnx
    assert find_export(lingua_export) == lingua_export.resolve()  # the export itself
    auto = load_lingua(str(lingua_model), device="cpu")
    assert (auto.backend.name, auto.backend.device) == ("onnx-int8", "cpu")  # exported with int8
    assert load_lingua(str(lingua_export), device="cpu", backend="onnx").backend.name == "onnx"
    # torch asked for on an export folder: loads the source model the marker names
    assert load_lingua(str(lingua_export), device="cpu", backend="torch").backend.name == "torch"


def test_loader_picks_torch_without_an_export(plain_model_dir):
    assert find_export(plain_model_dir) is None
    lingua = load_lingua(str(plain_model_dir), device="cpu")
    assert (lingua.backend.name, lingua.backend.device) == ("torch", "cpu")
    with pytest.raises(FileNotFoundError):
        load_lingua(str(plain_model_dir), device="cpu", backend="onnx")


def test_loader_validates_and_resolves():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    with pytest.raises(ValueError):
        load_lingua("whatever", backend="tensorrt")
    assert llmlingua_installed()
